//! gst-cudainfer: GStreamer elements for deep-learning inference on video.
//!
//! - `cudapreprocess` attaches a model-ready tensor to each frame;
//! - `trtinfer` runs an ONNX model on it through ONNX Runtime and attaches
//!   the detections (see [`detections`]), or with `model-type=raw` the
//!   model's outputs themselves (see [`raw_outputs`]);
//! - `inferoverlay` draws the detections on the frame;
//! - `infertrack` follows the detected objects over frames and gives each
//!   a track id;
//! - `inferpublish` writes each frame's results as a JSON line to a file,
//!   stdout or an MQTT broker.

use gst::glib;

/// Declares modules that applications do not use: private, except to the
/// benches, tests and fuzzers, which turn on the `internals` feature.
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    )*};
}

// What applications read: the metas and their readers (the modules stay
// reachable at the crate root, where applications have used them).
pub mod meta;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub use meta::tensor_meta;
pub use meta::{analytics, detections, raw_outputs};

internal_modules!(cuda, families, inference, preprocess, spec, tensor);

mod cudapreprocess;
mod inferoverlay;
mod inferpublish;
mod infertrack;
mod properties;
mod trtinfer;

pub use detections::{Classification, Detection, FrameDetections, Skip, Track, TrackState};
pub use raw_outputs::RawTensor;

/// The decoder element of a codec on a CUDA device, for applications that
/// build a branch per GPU (see the README's "Two GPUs").
pub use cuda::placement::decoder_for_device;

/// The pure parts of model loading (labels bytes, the model's input/output
/// check) and what the decoders' fuzzers need to reach decoding, for the
/// fuzzers in `fuzz/`: not part of the API applications use.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::inference::checks::{
        check_input_size, check_model_io, model_shapes, parse_labels, LabelsError, ModelValue,
        ValueKind,
    };
    pub use crate::inferoverlay::draw::class_colour;

    /// How many priors `priors` describes for a `width` x `height` input:
    /// the count an ssd model with raw boxes must have.
    pub fn ssd_prior_count(priors: &crate::families::ssd::Priors, width: u32, height: u32) -> u64 {
        priors.count(width, height)
    }
}

/// Caps feature of GStreamer's CUDA memory.
pub const CUDA_MEMORY_FEATURE: &str = "memory:CUDAMemory";

/// Pads of an element that reads or writes the frame's pixels
/// (cudapreprocess, inferoverlay): the formats both paths handle, in CUDA
/// memory first (so that a GPU producer keeps its frames there), then in
/// system memory.
fn pixel_pad_templates() -> Vec<gst::PadTemplate> {
    let formats = || preprocess::SUPPORTED_FORMATS.iter().copied();
    let mut caps = gst_video::VideoCapsBuilder::new()
        .features([CUDA_MEMORY_FEATURE])
        .format_list(formats())
        .build();
    caps.merge(
        gst_video::VideoCapsBuilder::new()
            .format_list(formats())
            .build(),
    );
    pass_through_pad_templates(&caps)
}

/// Pads of an element that only reads or writes metadata (trtinfer,
/// infertrack, inferpublish): any raw video, in system or CUDA memory.
fn metadata_pad_templates() -> Vec<gst::PadTemplate> {
    let mut caps = gst::Caps::builder("video/x-raw").build();
    caps.merge(
        gst::Caps::builder("video/x-raw")
            .features([CUDA_MEMORY_FEATURE])
            .build(),
    );
    pass_through_pad_templates(&caps)
}

/// Always-present `sink` and `src` pads with the same caps: both elements
/// pass the frame through.
fn pass_through_pad_templates(caps: &gst::Caps) -> Vec<gst::PadTemplate> {
    [
        ("src", gst::PadDirection::Src),
        ("sink", gst::PadDirection::Sink),
    ]
    .into_iter()
    .map(|(name, direction)| {
        gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps)
            .expect("valid template")
    })
    .collect()
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    spec::register_types();
    meta::tensor_meta::register();
    meta::detections::register();
    meta::raw_outputs::register();
    cudapreprocess::register(plugin)?;
    trtinfer::register(plugin)?;
    inferoverlay::register(plugin)?;
    infertrack::register(plugin)?;
    inferpublish::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    cudainfer,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    // COMMIT_ID and BUILD_REL_DATE come from build.rs (the git commit and its
    // date, or RELEASE and the release date outside a checkout).
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
