//! The model's input specification and the custom query that carries it from
//! `trtinfer` up to `cudapreprocess`.
//!
//! `cudapreprocess` sends a `cudainfer-input-spec` custom query downstream;
//! `trtinfer` fills in what its model and model family want. Fields that
//! `cudapreprocess` has set as properties take precedence over the answer.

use glib::prelude::*;

/// Largest tensor side either element accepts: above any detector's input,
/// below sizes whose buffers take gigabytes per frame.
pub const MAX_TENSOR_SIDE: u32 = 8192;

/// Name of the custom query structure.
pub const INPUT_SPEC_QUERY: &str = "cudainfer-input-spec";

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCudaInferChannelOrder")]
pub enum ChannelOrder {
    /// Take it from the model (asked downstream).
    #[default]
    #[enum_value(name = "Auto: as the model downstream wants", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "RGB", nick = "rgb")]
    Rgb = 1,
    #[enum_value(name = "BGR", nick = "bgr")]
    Bgr = 2,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCudaInferResizeMode")]
pub enum ResizeMode {
    /// Take it from the model (asked downstream).
    #[default]
    #[enum_value(name = "Auto: as the model downstream wants", nick = "auto")]
    Auto = 0,
    #[enum_value(
        name = "Letterbox: keep aspect ratio, image top-left, pad the rest",
        nick = "letterbox"
    )]
    Letterbox = 1,
    #[enum_value(
        name = "Stretch: fill the tensor, aspect ratio not kept",
        nick = "stretch"
    )]
    Stretch = 2,
    /// Ultralytics' placement: the padding split evenly between both sides
    /// (the odd pixel right or bottom).
    #[enum_value(
        name = "Letterbox centred: keep aspect ratio, image in the middle, pad both sides",
        nick = "letterbox-centred"
    )]
    LetterboxCentred = 3,
}

/// The element type of the model's input tensor (and of the tensors
/// `cudapreprocess` makes for it on the GPU).
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCudaInferElementType")]
pub enum ElementType {
    #[default]
    #[enum_value(name = "float32", nick = "float32")]
    Float32 = 0,
    #[enum_value(name = "float16 (IEEE half precision)", nick = "float16")]
    Float16 = 1,
}

impl ElementType {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            ElementType::Float32 => 4,
            ElementType::Float16 => 2,
        }
    }

    /// ONNX's name, as export tools print it.
    pub fn name(self) -> &'static str {
        match self {
            ElementType::Float32 => "float32",
            ElementType::Float16 => "float16",
        }
    }
}

/// Everything the pre-processing needs to know about the model input.
///
/// A tensor value is `(pixel * pixel_scale - mean[c]) / std[c]`, channel `c`
/// in `channel_order`, laid out NCHW as `element_type` (host tensors are
/// always float32: the host path converts at the model's input).
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    pub channel_order: ChannelOrder,
    pub resize_mode: ResizeMode,
    pub pixel_scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Value (0..255 pixel scale, before normalisation) of letterbox padding.
    pub pad_value: f32,
    /// The model input's element type; families' presets say float32 and
    /// the loaded model's type replaces it.
    pub element_type: ElementType,
}

impl InputSpec {
    /// RGB stretched to `width` x `height`, normalised as (x − mean) / std
    /// on the 0..255 scale: the preset of the stretching families.
    pub fn stretched_rgb(width: u32, height: u32, mean: f32, std: f32) -> Self {
        Self {
            width,
            height,
            channel_order: ChannelOrder::Rgb,
            resize_mode: ResizeMode::Stretch,
            pixel_scale: 1.0,
            mean: [mean; 3],
            std: [std; 3],
            pad_value: 0.0,
            element_type: ElementType::Float32,
        }
    }

    pub fn to_structure(&self) -> gst::Structure {
        gst::Structure::builder(INPUT_SPEC_QUERY)
            .field("width", self.width)
            .field("height", self.height)
            .field("channel-order", self.channel_order)
            .field("resize-mode", self.resize_mode)
            .field("pixel-scale", self.pixel_scale)
            .field("mean", gst::Array::new(self.mean))
            .field("std", gst::Array::new(self.std))
            .field("pad-value", self.pad_value)
            .field("element-type", self.element_type)
            .build()
    }

    /// Reads a complete spec from an answered query structure.
    pub fn from_structure(s: &gst::StructureRef) -> Option<Self> {
        let triple = |name: &str| -> Option<[f32; 3]> {
            let arr = s.get::<gst::Array>(name).ok()?;
            let v: Vec<f32> = arr.iter().filter_map(|v| v.get::<f32>().ok()).collect();
            v.try_into().ok()
        };
        Some(Self {
            width: s.get("width").ok()?,
            height: s.get("height").ok()?,
            channel_order: s.get("channel-order").ok()?,
            resize_mode: s.get("resize-mode").ok()?,
            pixel_scale: s.get("pixel-scale").ok()?,
            mean: triple("mean")?,
            std: triple("std")?,
            pad_value: s.get("pad-value").ok()?,
            element_type: s.get("element-type").ok()?,
        })
    }
}

/// Makes the (unanswered) query that `cudapreprocess` sends downstream.
pub fn new_input_spec_query() -> gst::query::Custom<gst::Query> {
    gst::query::Custom::new(gst::Structure::new_empty(INPUT_SPEC_QUERY))
}

/// Whether `query` is our input-spec query.
pub fn is_input_spec_query(query: &gst::QueryRef) -> bool {
    match query.view() {
        gst::QueryView::Custom(c) => c.structure().is_some_and(|s| s.name() == INPUT_SPEC_QUERY),
        _ => false,
    }
}

/// Answers an input-spec query in place.
pub fn answer_input_spec_query(query: &mut gst::QueryRef, spec: &InputSpec) -> bool {
    if let gst::QueryViewMut::Custom(c) = query.view_mut() {
        let s = c.structure_mut();
        for (name, value) in spec.to_structure().iter() {
            s.set_value(name, value.clone());
        }
        return true;
    }
    false
}

/// Reads the answer of an input-spec query.
pub fn parse_input_spec_answer(query: &gst::QueryRef) -> Option<InputSpec> {
    match query.view() {
        gst::QueryView::Custom(c) => c.structure().and_then(InputSpec::from_structure),
        _ => None,
    }
}

/// Keeps the enum types registered for property and structure use.
pub fn register_types() {
    ChannelOrder::static_type();
    ResizeMode::static_type();
    ElementType::static_type();
}
