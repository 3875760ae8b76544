//! Model families: what input each wants (its preset) and how its raw output
//! becomes detection candidates (or, for classifiers, classes; for `raw`,
//! the outputs as they are), on the host
//! and, with its own kernel, on the GPU. Adding a family means adding a module here and a [`ModelType`]
//! value; the `trtinfer` element, `inference/` and `cuda/` do not change.

pub mod classifier;
mod error;
pub mod nms;
pub mod raw;
pub mod ssd;
pub mod yolov8;
pub mod yolox;

pub use error::{Outputs, ShapeError};

use crate::cuda::{CudaError, Gpu};
use crate::inference::device::DeviceDecoder;
use crate::spec::InputSpec;

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

/// Settings of one family, from the element's properties; the other
/// families ignore them. Part of a session's identity (elements with other
/// options do not share a session).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FamilyOptions {
    pub ssd: ssd::SsdOptions,
    pub classifier: classifier::ClassifierOptions,
}

/// One detection before NMS, in tensor pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class_id: u32,
    pub confidence: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

/// One class of a whole-frame classification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScore {
    pub class_id: u32,
    pub confidence: f32,
}

/// What a family makes of one image's output, so that `inference/` carries
/// either kind without knowing the family.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameResult {
    /// Detection candidates, in tensor pixels, before NMS.
    Candidates(Vec<Candidate>),
    /// Classes of the whole frame, most confident first.
    Classes(Vec<ClassScore>),
    /// The frame's part of each output, not decoded.
    Tensors(Vec<crate::raw_outputs::RawTensor>),
}

/// What one frame keeps of its decoded output: candidates above `confidence`, at most the `max_detections` most confident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    pub confidence: f32,
    pub max_detections: usize,
}

/// The `max` most confident of `candidates` (ties go to the earlier one),
/// in their original order: the same result wherever decoding ran, as both
/// paths give candidates in (row, class) order.
pub fn keep_most_confident(candidates: Vec<Candidate>, max: usize) -> Vec<Candidate> {
    if candidates.len() <= max {
        return candidates;
    }
    // A total order (confidence descending, then position), so the
    // selection is deterministic; O(n) rather than a full sort, as a low
    // threshold leaves hundreds of thousands of candidates.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    let rank = |&a: &usize, &b: &usize| {
        candidates[b]
            .confidence
            .total_cmp(&candidates[a].confidence)
            .then(a.cmp(&b))
    };
    if max > 0 {
        order.select_nth_unstable_by(max - 1, rank);
    }
    order.truncate(max);
    order.sort_unstable();
    order.into_iter().map(|i| candidates[i]).collect()
}

/// Most values one frame's output may have (256 MB of float32), as
/// `inference::MAX_INPUT_VALUES` for the input: a model claiming more is a
/// broken export, and its size must not overflow.
pub const MAX_OUTPUT_VALUES: u64 = 64 << 20;

/// Shapes of the model's input and outputs as ONNX Runtime reports them
/// (`-1` for a symbolic dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShapes {
    pub input: Vec<i64>,
    /// Every output, in the model's order.
    pub outputs: Vec<ModelOutput>,
}

/// One output of the model: its name and shape (empty for a value that is
/// not a tensor).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    pub name: String,
    pub shape: Vec<i64>,
}

impl ModelShapes {
    /// The shape of the first output (empty if there is none), the one
    /// output of the YOLO families.
    pub fn first_output(&self) -> &[i64] {
        self.outputs.first().map_or(&[], |o| &o.shape)
    }
}

/// A model output a family decodes: its index among the model's outputs
/// and the shape of one image's part of it (the batch dimension dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputUse {
    pub index: usize,
    pub dims: Vec<usize>,
}

impl OutputUse {
    /// f32 values one image has in this output.
    pub fn values(&self) -> usize {
        self.dims.iter().product()
    }
}

pub trait OutputParser: Send + Sync {
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
    fn device_decoder(&self, _gpu: &Gpu) -> Option<Result<Box<dyn DeviceDecoder>, CudaError>> {
        None
    }
}

/// Builds the parser for `model_type`, checking that the model's shapes fit
/// the family (and `options` its own). The error says what does not fit.
pub fn new_parser(
    model_type: ModelType,
    shapes: &ModelShapes,
    options: &FamilyOptions,
) -> Result<Box<dyn OutputParser>, ShapeError> {
    match model_type {
        ModelType::Yolox => Ok(Box::new(yolox::YoloxParser::new(shapes)?)),
        ModelType::Yolov8 => Ok(Box::new(yolov8::Yolov8Parser::new(shapes)?)),
        ModelType::Ssd => Ok(Box::new(ssd::SsdParser::new(shapes, &options.ssd)?)),
        ModelType::Classifier => Ok(Box::new(classifier::ClassifierParser::new(
            shapes,
            &options.classifier,
        )?)),
        ModelType::Raw => Ok(Box::new(raw::RawParser::new(shapes)?)),
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

    fn candidate(class_id: u32, confidence: f32) -> Candidate {
        Candidate {
            class_id,
            confidence,
            x1: 0.0,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
        }
    }

    fn ids(candidates: &[Candidate]) -> Vec<u32> {
        candidates.iter().map(|c| c.class_id).collect()
    }

    #[test]
    fn keeps_the_most_confident_in_original_order() {
        let all: Vec<Candidate> = [0.2, 0.9, 0.5, 0.7, 0.1]
            .iter()
            .enumerate()
            .map(|(i, &c)| candidate(i as u32, c))
            .collect();
        assert_eq!(ids(&keep_most_confident(all.clone(), 3)), [1, 2, 3]);
        assert_eq!(ids(&keep_most_confident(all.clone(), 1)), [1]);
        assert!(keep_most_confident(all.clone(), 0).is_empty());
        assert_eq!(keep_most_confident(all.clone(), 5), all);
        assert_eq!(keep_most_confident(all.clone(), usize::MAX), all);
    }

    #[test]
    fn ties_go_to_the_earlier_candidate() {
        let all: Vec<Candidate> = [0.5, 0.8, 0.5, 0.5, 0.8]
            .iter()
            .enumerate()
            .map(|(i, &c)| candidate(i as u32, c))
            .collect();
        assert_eq!(ids(&keep_most_confident(all.clone(), 3)), [0, 1, 4]);
        assert_eq!(ids(&keep_most_confident(all.clone(), 4)), [0, 1, 2, 4]);
        assert_eq!(ids(&keep_most_confident(all, 2)), [1, 4]);
    }

    #[test]
    fn agrees_with_a_full_stable_sort() {
        // Few distinct confidences, so that ties are everywhere.
        let all: Vec<Candidate> = (0..500u32)
            .map(|i| candidate(i, ((i * 7919) % 13) as f32 / 13.0))
            .collect();
        for max in [0, 1, 7, 38, 39, 40, 250, 499, 500, 501] {
            let mut sorted = all.clone();
            sorted.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
            let mut expected: Vec<u32> = ids(&sorted[..max.min(all.len())]);
            expected.sort_unstable();
            assert_eq!(
                ids(&keep_most_confident(all.clone(), max)),
                expected,
                "max {max}"
            );
        }
    }
}
