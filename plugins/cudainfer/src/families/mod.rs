//! Model families: what input each wants (its preset) and how its raw
//! output becomes detection candidates (or, for classifiers, classes; for
//! `raw`, the outputs as they are), on the host and, with its own kernel,
//! on the GPU.
//!
//! This module owns the contract ([`contract`], [`gpu`]) that `inference/`
//! runs families through; nothing here imports `inference/`. Adding a
//! family is a module here, a [`ModelType`] value and its arm in
//! [`new_family`] (see docs/adding-a-family.md).

pub mod classifier;
pub mod contract;
mod error;
pub mod gpu;
pub mod nms;
pub mod raw;
pub mod ssd;
pub mod yolov8;
pub mod yolox;

pub use contract::{
    keep_most_confident, Candidate, ClassScore, DecodeLimits, FrameResult, ModelOutput,
    ModelShapes, OutputUse, MAX_OUTPUT_VALUES,
};
pub use error::{Outputs, ShapeError};

use crate::cuda::{CudaError, Gpu};
use crate::spec::InputSpec;
use gpu::GpuDecoder;

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCudaInferModelType")]
pub enum ModelType {
    #[default]
    #[enum_value(
        name = "YOLOX: letterboxed BGR 0..255 input, [N, anchors, 5 + classes] output",
        nick = "yolox"
    )]
    Yolox = 0,
    #[enum_value(
        name = "Ultralytics YOLOv8/YOLO11/YOLOv12: centred letterbox RGB 0..1 input, [N, 4 + classes, anchors] output",
        nick = "yolov8"
    )]
    Yolov8 = 1,
    #[enum_value(
        name = "SSD-style (UltraFace): stretched RGB (x-127)/128 input, scores [N, priors, classes] and boxes [N, priors, 4] outputs",
        nick = "ssd"
    )]
    Ssd = 2,
    #[enum_value(
        name = "Whole-frame classifier (MobileNetV2...): stretched RGB (x-127.5)/127.5 input, [N, classes] output",
        nick = "classifier"
    )]
    Classifier = 3,
    #[enum_value(
        name = "Raw: no decoding, every output attached as it is; stretched RGB 0..255 input (set cudapreprocess for the model)",
        nick = "raw"
    )]
    Raw = 4,
}

impl ModelType {
    /// Every family, in the property's order.
    pub const ALL: [ModelType; 5] = [
        ModelType::Yolox,
        ModelType::Yolov8,
        ModelType::Ssd,
        ModelType::Classifier,
        ModelType::Raw,
    ];

    /// The family's `model-type` value ("yolox"...).
    pub fn nick(self) -> &'static str {
        use glib::prelude::*;
        glib::EnumValue::from_value(&self.to_value()).map_or("?", |(_, v)| v.nick())
    }

    /// Whether the family has a GPU kernel ([`Family::gpu_decoder`]), so
    /// that what needs GPU decoding (a CUDA graph) can say which do.
    pub fn decodes_on_gpu(self) -> bool {
        match self {
            ModelType::Yolox | ModelType::Yolov8 | ModelType::Ssd => true,
            ModelType::Classifier | ModelType::Raw => false,
        }
    }
}

/// The `model-type` values of the families decoded on the GPU, for
/// messages: "yolox, yolov8, ssd".
pub fn gpu_decoded_families() -> String {
    ModelType::ALL
        .iter()
        .filter(|t| t.decodes_on_gpu())
        .map(|t| t.nick())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Settings of one family, from the element's properties; the other
/// families ignore them. Part of a session's identity (elements with other
/// options do not share a session).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FamilyOptions {
    pub ssd: ssd::SsdOptions,
    pub classifier: classifier::ClassifierOptions,
}

/// One model of a family, built from the model's shapes by [`new_family`]:
/// what `inference/` needs to feed the model and decode its outputs.
pub trait Family: Send + Sync {
    /// The input the model wants, from its family's preset and its shapes.
    fn input_spec(&self) -> &InputSpec;
    /// Number of classes the model predicts.
    fn num_classes(&self) -> usize;
    /// The model outputs the family decodes, in the order [`Self::decode`]
    /// and the device decoder receive them.
    fn outputs(&self) -> Vec<OutputUse>;
    /// Decodes one image's (batch item's) part of each output of
    /// [`Self::outputs`] into candidates whose confidence exceeds `threshold`.
    fn decode(&self, outputs: &[&[f32]], threshold: f32) -> Vec<Candidate>;
    /// One image's result within `limits`: for detectors, the most
    /// confident of [`Self::decode`]'s candidates.
    fn decode_frame(&self, outputs: &[&[f32]], limits: DecodeLimits) -> FrameResult {
        let all = self.decode(outputs, limits.confidence);
        FrameResult::Candidates(keep_most_confident(all, limits.max_detections))
    }
    /// The family's decoder of outputs on `gpu`, which gives the same
    /// candidates as [`Self::decode`], where it has a kernel; `None` decodes
    /// on the host. The error says why it cannot be made.
    fn gpu_decoder(&self, _gpu: &Gpu) -> Option<Result<Box<dyn GpuDecoder>, CudaError>> {
        None
    }
}

/// Builds the parser for `model_type`, checking that the model's shapes fit
/// the family (and `options` its own). The error says what does not fit.
pub fn new_family(
    model_type: ModelType,
    shapes: &ModelShapes,
    options: &FamilyOptions,
) -> Result<Box<dyn Family>, ShapeError> {
    match model_type {
        ModelType::Yolox => Ok(Box::new(yolox::YoloxFamily::new(shapes)?)),
        ModelType::Yolov8 => Ok(Box::new(yolov8::Yolov8Family::new(shapes)?)),
        ModelType::Ssd => Ok(Box::new(ssd::SsdFamily::new(shapes, &options.ssd)?)),
        ModelType::Classifier => Ok(Box::new(classifier::ClassifierFamily::new(
            shapes,
            &options.classifier,
        )?)),
        ModelType::Raw => Ok(Box::new(raw::RawFamily::new(shapes)?)),
    }
}

/// The strides of the three output grids of YOLOX and Ultralytics
/// detectors, finest first.
const STRIDES: [u32; 3] = [8, 16, 32];

/// (width, height) of an NCHW image input `[N, 3, H, W]` with a fixed size
/// that the strides divide, as the grid-based families need; the error
/// says what does not fit, naming `family`.
fn grid_input_size(family: &'static str, input: &[i64]) -> Result<(u32, u32), ShapeError> {
    let (width, height) = image_input_size(family, input)?;
    if width % 32 != 0 || height % 32 != 0 {
        return Err(ShapeError::NotGridMultiple {
            family,
            height,
            width,
        });
    }
    Ok((width, height))
}

/// (width, height) of an NCHW image input `[N, 3, H, W]` with a fixed size
/// of at most [`crate::spec::MAX_TENSOR_SIDE`]; the error says what does
/// not fit, naming `family`.
fn image_input_size(family: &'static str, input: &[i64]) -> Result<(u32, u32), ShapeError> {
    if input.len() != 4 || input[1] != 3 {
        return Err(ShapeError::NotImage {
            family,
            input: input.to_vec(),
        });
    }
    let fixed = |i: usize| u32::try_from(input[i]).ok().filter(|&d| d > 0);
    let (Some(height), Some(width)) = (fixed(2), fixed(3)) else {
        return Err(ShapeError::NotFixedSize {
            family,
            input: input.to_vec(),
        });
    };
    // Bounds the anchors a family makes from the size (trtinfer refuses
    // such inputs before, but the parser must not rely on it).
    if width > crate::spec::MAX_TENSOR_SIDE || height > crate::spec::MAX_TENSOR_SIDE {
        return Err(ShapeError::InputTooLarge {
            family,
            height,
            width,
        });
    }
    Ok((width, height))
}

/// Shapes of a model with one input and one output named `name`, for the
/// families' unit tests.
#[cfg(test)]
pub(crate) fn test_shapes(input: &[i64], name: &str, output: &[i64]) -> ModelShapes {
    ModelShapes {
        input: input.to_vec(),
        outputs: vec![ModelOutput {
            name: name.into(),
            shape: output.to_vec(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_families_decoded_on_the_gpu() {
        assert_eq!(gpu_decoded_families(), "yolox, yolov8, ssd");
        assert_eq!(ModelType::ALL.map(ModelType::nick).len(), 5);
        assert_eq!(ModelType::Classifier.nick(), "classifier");
    }
}
