//! Results as GStreamer's own analytics metadata (`GstAnalyticsRelationMeta`,
//! GStreamer 1.24 and later), so that upstream's analytics elements (e.g.
//! `objectdetectionoverlay`) and applications read them too: one
//! object-detection entry per object, a classification entry per classified
//! object and one for a frame's classes, a tracking entry per tracked
//! object, and RELATE_TO relations from an object to its classification and
//! track (the direction upstream's overlay and tracker use).
//!
//! The library is loaded at run time (see [`ffi`]); on GStreamer 1.22, or
//! without it, nothing is attached and that is logged once at debug level.

mod ffi;

use std::fmt;
use std::sync::LazyLock;

use super::detections::FrameDetections;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "cudainfer-analytics",
        gst::DebugColorFlags::empty(),
        Some("cudainfer's GstAnalytics relation metas"),
    )
});

/// Why no relation meta could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalyticsError {
    /// GStreamer is older than 1.24, which brought the analytics library.
    OldGStreamer { major: u32, minor: u32 },
    LibraryMissing {
        library: &'static str,
        reason: String,
    },
    SymbolMissing {
        library: &'static str,
        symbol: &'static str,
        reason: String,
    },
    /// The library refused to add this.
    AddFailed(&'static str),
}

impl fmt::Display for AnalyticsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnalyticsError::OldGStreamer { major, minor } => write!(
                f,
                "GStreamer {major}.{minor} has no analytics library (1.24 or later has)"
            ),
            AnalyticsError::LibraryMissing { library, reason } => write!(
                f,
                "GStreamer's analytics library {library} is missing ({reason}): install gst-plugins-bad 1.24 or later"
            ),
            AnalyticsError::SymbolMissing {
                library,
                symbol,
                reason,
            } => write!(f, "{library} lacks {symbol} ({reason})"),
            AnalyticsError::AddFailed(what) => {
                write!(f, "the analytics relation meta refused the {what}")
            }
        }
    }
}

impl std::error::Error for AnalyticsError {}

/// One entry of a relation meta, as GStreamer's analytics library reads it
/// back.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// An object-detection entry: label, box (x, y, w, h) in frame pixels,
    /// confidence.
    Object {
        label: String,
        rect: (i32, i32, i32, i32),
        confidence: f32,
    },
    /// A classification entry: (label, confidence), most probable first.
    Classes(Vec<(String, f32)>),
    /// A tracking entry.
    Track {
        id: u64,
        first_seen: Option<gst::ClockTime>,
        last_seen: Option<gst::ClockTime>,
        lost: bool,
    },
    /// An entry of a type we do not write (segmentation, tensor, ...).
    Other,
}

/// Whether relation metas are written here; the error says why not.
pub fn available() -> Result<(), AnalyticsError> {
    ffi::available()
}

/// The entries of `buffer`'s relation meta, by id (0..n); None without one,
/// or on GStreamer older than 1.24.
pub fn entries(buffer: &gst::BufferRef) -> Option<Vec<Entry>> {
    let meta = ffi::relation_meta(buffer)?;
    Some(
        (0..meta.len() as u32)
            .map(|id| meta.entry(id).unwrap_or(Entry::Other))
            .collect(),
    )
}

/// Whether entry `from` of `buffer`'s relation meta RELATE_TOs entry `to`.
pub fn relates(buffer: &gst::BufferRef, from: u32, to: u32) -> bool {
    ffi::relation_meta(buffer).is_some_and(|m| m.relates(from, to))
}

/// Writes `frame` into `buffer`'s relation meta, adding one if it has none;
/// true if one was added (so that [`remove`] may take it off again). An
/// error is logged once (the library missing, on 1.22) or per frame (a
/// refused entry), never fatal: the region-of-interest metas still carry
/// everything.
pub(crate) fn attach(frame: &FrameDetections, buffer: &mut gst::BufferRef) -> bool {
    if frame.detections.is_empty() && frame.classifications.is_empty() {
        return false;
    }
    let had_one = ffi::relation_meta(buffer).is_some();
    if let Err(e) = write(frame, buffer) {
        if let AnalyticsError::AddFailed(_) = e {
            gst::warning!(CAT, "incomplete GstAnalytics relation meta: {e}");
        } else {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| gst::debug!(CAT, "no GstAnalytics relation metas: {e}"));
        }
    }
    !had_one && ffi::relation_meta(buffer).is_some()
}

fn write(frame: &FrameDetections, buffer: &mut gst::BufferRef) -> Result<(), AnalyticsError> {
    let pts = buffer.pts();
    let duration = buffer.duration();
    let entries = frame
        .detections
        .iter()
        .map(|d| 1 + usize::from(!d.classifications.is_empty()) + usize::from(d.track.is_some()))
        .sum::<usize>()
        + usize::from(!frame.classifications.is_empty());
    let mut meta = ffi::relation_meta_mut(buffer, entries)?;
    for d in &frame.detections {
        let (x, y, w, h) = d.pixel_box();
        let object = meta.add_object(
            &d.label,
            (x as i32, y as i32, w as i32, h as i32),
            d.confidence,
        )?;
        if !d.classifications.is_empty() {
            let classes: Vec<_> = d
                .classifications
                .iter()
                .map(|c| (c.label.as_str(), c.confidence))
                .collect();
            let cls = meta.add_classes(&classes)?;
            meta.relate(object, cls)?;
        }
        if let Some(track) = d.track {
            // The track began `age` frames ago: with frames of known
            // duration that is its first pts; else this frame's.
            let first_seen = match (pts, duration) {
                (Some(pts), Some(duration)) => {
                    Some(pts.saturating_sub(duration * u64::from(track.age)))
                }
                (pts, _) => pts,
            };
            let lost = track.state == crate::TrackState::Lost;
            let entry = meta.add_track(track.id, first_seen, pts, lost)?;
            meta.relate(object, entry)?;
        }
    }
    if !frame.classifications.is_empty() {
        let classes: Vec<_> = frame
            .classifications
            .iter()
            .map(|c| (c.label.as_str(), c.confidence))
            .collect();
        meta.add_classes(&classes)?;
    }
    Ok(())
}

/// Removes `buffer`'s relation metas (the one [`attach`] added).
pub(crate) fn remove(buffer: &mut gst::BufferRef) {
    let Some(api) = ffi::api_type() else { return };
    buffer.foreach_meta_mut(|meta| {
        std::ops::ControlFlow::Continue(if meta.api() == api {
            gst::buffer::BufferMetaForeachAction::Remove
        } else {
            gst::buffer::BufferMetaForeachAction::Keep
        })
    });
}
