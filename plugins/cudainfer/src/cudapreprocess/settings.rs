//! cudapreprocess's settings: its property values and how they merge with
//! the input the model downstream asks for.

use gst::glib;

use super::error::SettingsError;
use crate::spec::{self, ChannelOrder, ElementType, InputSpec, ResizeMode};

/// Smallest |std| accepted.
const MIN_STD: f32 = 1e-6;

pub(super) const DEFAULT_MIN_OBJECT_SIZE: u32 = 16;
pub(super) const DEFAULT_MAX_OBJECTS: u32 = 32;

/// Used where neither the model nor a property says otherwise.
const FALLBACK_PAD_VALUE: f32 = 114.0;

/// What a tensor is made of.
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCudaPreprocessMode")]
pub enum Mode {
    #[default]
    #[enum_value(name = "Frame: one tensor of the whole frame", nick = "frame")]
    Frame = 0,
    /// Secondary inference: the frame's objects, found by a trtinfer
    /// detector upstream, each cropped into its own tensor.
    #[enum_value(
        name = "Objects: one tensor per object a detector upstream found (for a classifier)",
        nick = "objects"
    )]
    Objects = 1,
}

/// Property values; "unset" (0, auto, empty, -1) means "as the model wants".
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) mode: Mode,
    pub(super) object_classes: String,
    pub(super) min_object_size: u32,
    pub(super) max_objects: u32,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) resize_mode: ResizeMode,
    pub(super) channel_order: ChannelOrder,
    pub(super) pixel_scale: f64,
    pub(super) mean: Vec<f32>,
    pub(super) std: Vec<f32>,
    pub(super) pad_value: i32,
    pub(super) device_id: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Frame,
            object_classes: String::new(),
            min_object_size: DEFAULT_MIN_OBJECT_SIZE,
            max_objects: DEFAULT_MAX_OBJECTS,
            width: 0,
            height: 0,
            resize_mode: ResizeMode::Auto,
            channel_order: ChannelOrder::Auto,
            pixel_scale: 0.0,
            mean: Vec::new(),
            std: Vec::new(),
            pad_value: -1,
            device_id: 0,
        }
    }
}

impl Settings {
    /// Merges the properties over what downstream said (if anything).
    pub(super) fn resolve(&self, learnt: Option<&InputSpec>) -> Result<InputSpec, SettingsError> {
        let pick_u32 = |own: u32, from: Option<u32>| if own > 0 { Some(own) } else { from };
        let (Some(width), Some(height)) = (
            pick_u32(self.width, learnt.map(|s| s.width)),
            pick_u32(self.height, learnt.map(|s| s.height)),
        ) else {
            return Err(SettingsError::UnknownSize);
        };
        let triple = |own: &[f32],
                      from: Option<[f32; 3]>,
                      default: f32|
         -> Result<[f32; 3], SettingsError> {
            match own.len() {
                0 => Ok(from.unwrap_or([default; 3])),
                1 => Ok([own[0]; 3]),
                3 => Ok([own[0], own[1], own[2]]),
                n => Err(SettingsError::ValueCount(n)),
            }
        };
        let side = spec::MAX_TENSOR_SIDE;
        if width > side || height > side {
            return Err(SettingsError::TooLarge { width, height });
        }
        // The model downstream checks every tensor against its input: a
        // different size can only fail there, frame after frame.
        if let Some(l) = learnt.filter(|l| (l.width, l.height) != (width, height)) {
            return Err(SettingsError::NotModelSize {
                width,
                height,
                model_width: l.width,
                model_height: l.height,
            });
        }
        let mean = triple(&self.mean, learnt.map(|s| s.mean), 0.0)?;
        let std = triple(&self.std, learnt.map(|s| s.std), 1.0)?;
        // NaN or infinity would turn every tensor value into NaN, and a tiny
        // std into infinities: the model would silently find nothing.
        if mean.iter().chain(&std).any(|v| !v.is_finite()) {
            return Err(SettingsError::NotFinite { mean, std });
        }
        if std.iter().any(|v| v.abs() < MIN_STD) {
            return Err(SettingsError::TinyStd { std, min: MIN_STD });
        }
        Ok(InputSpec {
            width,
            height,
            channel_order: match (self.channel_order, learnt) {
                (ChannelOrder::Auto, Some(l)) => l.channel_order,
                (ChannelOrder::Auto, None) => ChannelOrder::Rgb,
                (own, _) => own,
            },
            resize_mode: match (self.resize_mode, learnt) {
                (ResizeMode::Auto, Some(l)) => l.resize_mode,
                (ResizeMode::Auto, None) => ResizeMode::Letterbox,
                (own, _) => own,
            },
            pixel_scale: if self.pixel_scale > 0.0 {
                self.pixel_scale as f32
            } else {
                learnt.map_or(1.0, |l| l.pixel_scale)
            },
            mean,
            std,
            pad_value: if self.pad_value >= 0 {
                self.pad_value as f32
            } else {
                learnt.map_or(FALLBACK_PAD_VALUE, |l| l.pad_value)
            },
            // No property: only the model knows what it takes.
            element_type: learnt.map_or(ElementType::Float32, |l| l.element_type),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_override_what_downstream_says() {
        let learnt = InputSpec {
            width: 416,
            height: 416,
            channel_order: ChannelOrder::Bgr,
            resize_mode: ResizeMode::Letterbox,
            pixel_scale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            pad_value: 114.0,
            element_type: ElementType::Float16,
        };
        let own = Settings {
            channel_order: ChannelOrder::Rgb,
            mean: vec![0.5],
            ..Default::default()
        };
        let spec = own.resolve(Some(&learnt)).unwrap();
        assert_eq!((spec.width, spec.height), (416, 416));
        assert_eq!(spec.channel_order, ChannelOrder::Rgb);
        assert_eq!(spec.mean, [0.5; 3]);
        assert_eq!(spec.pad_value, 114.0);
        assert_eq!(spec.element_type, ElementType::Float16);
        let e = Settings::default().resolve(None).unwrap_err().to_string();
        assert!(e.contains("set its width and height"), "{e}");
        // Without a model downstream the size is the properties'.
        let sized = Settings {
            width: 320,
            height: 240,
            ..Default::default()
        };
        let spec = sized.resolve(None).unwrap();
        assert_eq!((spec.width, spec.height), (320, 240));
        let e = Settings {
            width: 320,
            ..Default::default()
        }
        .resolve(Some(&learnt))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a 320x416 tensor but the model downstream wants 416x416"),
            "{e}"
        );
    }

    #[test]
    fn refuses_values_that_make_useless_tensors() {
        let with = |mean: Vec<f32>, std: Vec<f32>| {
            Settings {
                width: 64,
                height: 64,
                mean,
                std,
                ..Default::default()
            }
            .resolve(None)
        };
        for bad in [f32::NAN, f32::INFINITY] {
            let e = with(vec![bad], vec![]).unwrap_err().to_string();
            assert!(e.contains("must be finite numbers"), "{e}");
            let e = with(vec![], vec![1.0, bad, 1.0]).unwrap_err().to_string();
            assert!(e.contains("must be finite numbers"), "{e}");
        }
        let e = with(vec![], vec![1e-7]).unwrap_err().to_string();
        assert!(e.contains("std must be at least 1e-6"), "{e}");
        assert!(with(vec![-1.0], vec![-0.5]).is_ok());
        let e = Settings {
            width: 16384,
            height: 16384,
            ..Default::default()
        }
        .resolve(None)
        .unwrap_err()
        .to_string();
        assert!(e.contains("at most 8192 on a side"), "{e}");
    }
}
