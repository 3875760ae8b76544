//! Detection results on buffers.
//!
//! For every object `trtinfer` adds a standard `GstVideoRegionOfInterestMeta`
//! (roi type = label, box in frame pixels, ids 0..n-1 in order of descending
//! confidence) with a `detection` parameter structure
//! (`label`: string, `class-id`: uint, `confidence`: double), so any
//! GStreamer program reads them with stock APIs. A classifier's classes
//! come the same way: one region-of-interest meta per class covering the
//! whole frame, with a `classification` parameter structure of the same
//! fields. Rust applications get the whole result at once from
//! [`FrameDetections::from_buffer`].

use std::sync::Arc;

use super::custom_meta;
use super::raw_outputs::RawTensor;

pub(super) const META_NAME: &str = "GstCudaInferDetectionsMeta";
/// Field of our meta saying that `attach` added the buffer's
/// GstAnalytics relation meta (so `remove_from` takes it off).
pub(super) const ADDED_RELATION_META: &str = "added-analytics-relation-meta";
/// Name of the parameter structure on each region-of-interest meta.
pub const DETECTION_PARAM: &str = "detection";
/// Name of the parameter structure on each whole-frame class's
/// region-of-interest meta, and on an object's meta once a classifier ran
/// on its crop (its most probable class).
pub const CLASSIFICATION_PARAM: &str = "classification";
/// Name of the parameter structure a tracker puts on an object's
/// region-of-interest meta.
pub const TRACKING_PARAM: &str = "tracking";

/// One detected object, box in frame pixels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detection {
    pub class_id: u32,
    pub label: String,
    pub confidence: f32,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    /// Classes of this object from a classifier run on its crop
    /// (secondary inference), most probable first; empty otherwise.
    pub classifications: Vec<Classification>,
    /// The object's track, once a tracker has seen it.
    pub track: Option<Track>,
    /// The box is the tracker's prediction on a frame that was not
    /// inferred (see [`FrameDetections::skipped`]), not a detection.
    pub predicted: bool,
}

/// Why `trtinfer` passed a frame on without running the model on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Between two inferred frames of `interval`.
    Interval,
    /// The result would have come later than `latency-budget`
    /// (`overload=skip`).
    Overload,
}

impl Skip {
    /// The name in the JSON lines (`skipped`) and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Interval => "interval",
            Skip::Overload => "overload",
        }
    }
}

/// Where an object's track stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrackState {
    /// Seen too few times to be trusted yet.
    #[default]
    Tentative,
    /// Matched often enough: a real object.
    Confirmed,
    /// Not matched in this frame; the box is the motion model's prediction.
    Lost,
}

impl TrackState {
    /// The name used in the `tracking` parameter's `state` field.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackState::Tentative => "tentative",
            TrackState::Confirmed => "confirmed",
            TrackState::Lost => "lost",
        }
    }
}

/// An object's identity over frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Track {
    /// Unique in the process: never shared between streams.
    pub id: u64,
    /// Frames since the track began.
    pub age: u32,
    pub state: TrackState,
}

/// One class of the whole frame (`model-type=classifier`), or of one
/// object's crop.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Classification {
    pub class_id: u32,
    pub label: String,
    pub confidence: f32,
}

/// All results of one frame, highest confidence first: objects of
/// detectors, classes of classifiers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FrameDetections {
    /// Path of the model that produced them.
    pub model: String,
    pub detections: Vec<Detection>,
    pub classifications: Vec<Classification>,
    /// The model's outputs themselves (`model-type=raw`), also attached as
    /// their own meta (see [`crate::meta::raw_outputs`]).
    pub raw_outputs: Vec<RawTensor>,
    /// Size of the frame the model ran on, which the classes' metas cover.
    pub frame_width: u32,
    pub frame_height: u32,
    /// Set when the model did not run on this frame: `detections` are then
    /// empty, or the tracker's predictions (each `predicted`).
    pub skipped: Option<Skip>,
}

#[derive(Clone, Debug, glib::Boxed)]
#[boxed_type(name = "GstCudaInferFrameDetections")]
pub(super) struct DetectionsHandle(pub(super) Arc<FrameDetections>);

impl Detection {
    /// The box as (x1, y1, x2, y2) in frame pixels.
    pub fn corners(&self) -> [f32; 4] {
        [self.x, self.y, self.x + self.width, self.y + self.height]
    }

    /// The box as (x, y, w, h) in whole pixels, as the metas carry it.
    pub fn pixel_box(&self) -> (u32, u32, u32, u32) {
        (
            self.x.round().max(0.0) as u32,
            self.y.round().max(0.0) as u32,
            self.width.round().max(0.0) as u32,
            self.height.round().max(0.0) as u32,
        )
    }
}

/// Registers the meta; called once, at plugin load.
pub fn register() {
    custom_meta::register(META_NAME);
}

impl FrameDetections {
    /// The detections `trtinfer` attached to `buffer`.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<Arc<FrameDetections>> {
        custom_meta::get::<DetectionsHandle>(buffer, META_NAME).map(|h| h.0)
    }
}

/// Adds one region-of-interest meta with its `param` structure.
pub(super) fn add_roi<'a>(
    buffer: &'a mut gst::BufferRef,
    id: i32,
    param: &str,
    label: &str,
    class_id: u32,
    confidence: f32,
    rect: (u32, u32, u32, u32),
) -> gst::MetaRefMut<'a, gst_video::VideoRegionOfInterestMeta, gst::meta::Standalone> {
    let mut roi = gst_video::VideoRegionOfInterestMeta::add(buffer, label, rect);
    roi.set_id(id);
    roi.add_param(class_param(param, label, class_id, confidence));
    roi
}

/// A `detection` or `classification` parameter structure.
pub(super) fn class_param(
    name: &str,
    label: &str,
    class_id: u32,
    confidence: f32,
) -> gst::Structure {
    gst::Structure::builder(name)
        .field("label", label)
        .field("class-id", class_id)
        .field("confidence", confidence as f64)
        .build()
}
