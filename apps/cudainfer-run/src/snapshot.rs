//! A camera's latest frame with its boxes, as JPEG, made only when asked.
//!
//! The pipeline's snapshot branch (see `pipeline::add_snapshot_branch`)
//! starts with a gate that drops every frame unless a request has asked for
//! one since the last: while nobody asks, no frame is drawn on, downloaded
//! from the GPU, scaled or encoded. A request opens the gate for one frame;
//! the encoded JPEG is kept, and requests within [`MIN_INTERVAL`] of the
//! last are answered from it, so a camera encodes at most five a second
//! however many clients poll.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::locked::Locked;

/// Least time between two frames encoded for one camera.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Longest a request waits for its frame (a 1 fps camera, a busy encoder).
pub const WAIT: Duration = Duration::from_secs(3);
/// JPEG quality: boxes and labels stay sharp, a 640-wide frame is ~40 KB.
pub const QUALITY: i32 = 80;

/// Snapshots encoded by all cameras since the start, removed ones included.
static ENCODED_TOTAL: AtomicU64 = AtomicU64::new(0);

pub fn encoded_total() -> u64 {
    ENCODED_TOTAL.load(Ordering::Relaxed)
}

/// One encoded frame.
pub struct Jpeg {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    at: Instant,
    seq: u64,
}

/// The snapshot state of one camera, kept across its pipelines' runs.
#[derive(Default)]
pub struct SnapshotTap {
    /// Let the next frame through the gate.
    wanted: AtomicBool,
    /// The width asked for last (0: none yet).
    width: AtomicU32,
    /// The current pipeline's caps filter that sets the size.
    size: Mutex<Option<gst::Element>>,
    latest: Mutex<Option<Arc<Jpeg>>>,
    /// When a frame was last asked for.
    asked: Mutex<Option<Instant>>,
    seq: AtomicU64,
    encoded: AtomicU64,
}

/// What a request gets from [`SnapshotTap::ask`].
pub enum Ask {
    /// A JPEG of the width asked, fresh enough to serve again.
    Cached(Arc<Jpeg>),
    /// A frame was asked for: wait for a JPEG after this sequence number.
    Asked(u64),
    /// Another frame was asked for too recently: try again after this.
    Later(Duration),
}

impl SnapshotTap {
    /// Frames this camera encoded as snapshots.
    pub fn encoded(&self) -> u64 {
        self.encoded.load(Ordering::Relaxed)
    }

    /// The caps of the branch's scaled frames for `width` (the height
    /// follows the frame's aspect, square pixels, up to the widest snapshot:
    /// a very tall source gave 1920x32767 JPEGs of 1.5 MB).
    pub fn caps(width: u32) -> gst::Caps {
        let tallest = *cudainfer_run::request::SNAPSHOT_WIDTHS.end() as i32;
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", width as i32)
            .field("height", gst::IntRange::new(1, tallest))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build()
    }

    /// A new pipeline's caps filter, set to the width asked for last.
    pub fn attach(&self, size: &gst::Element) {
        let width = match self.width.load(Ordering::Relaxed) {
            0 => cudainfer_run::request::SNAPSHOT_DEFAULT_WIDTH,
            w => w,
        };
        size.set_property("caps", Self::caps(width));
        *self.size.locked() = Some(size.clone());
    }

    /// The gate's decision on a frame: through only when one was asked for,
    /// and then once.
    pub fn pass(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }

    /// Keeps an encoded frame (from the branch's sink).
    pub fn store(&self, buffer: &gst::BufferRef, caps: Option<&gst::CapsRef>) {
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        let size = caps.and_then(|c| c.structure(0)).map(|s| {
            (
                s.get::<i32>("width").unwrap_or(0),
                s.get::<i32>("height").unwrap_or(0),
            )
        });
        let (width, height) = size.unwrap_or((0, 0));
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        *self.latest.locked() = Some(Arc::new(Jpeg {
            bytes: map.as_slice().to_vec(),
            width: width.max(0) as u32,
            height: height.max(0) as u32,
            at: Instant::now(),
            seq,
        }));
        self.encoded.fetch_add(1, Ordering::Relaxed);
        ENCODED_TOTAL.fetch_add(1, Ordering::Relaxed);
    }

    /// Serves from the cache, asks for a frame, or says when it may.
    pub fn ask(&self, width: u32) -> Ask {
        if let Some(jpeg) = self.latest.locked().as_ref() {
            if jpeg.width == width && jpeg.at.elapsed() < MIN_INTERVAL {
                return Ask::Cached(jpeg.clone());
            }
        }
        let mut asked = self.asked.locked();
        if let Some(at) = *asked {
            let since = at.elapsed();
            if since < MIN_INTERVAL {
                return Ask::Later(MIN_INTERVAL - since);
            }
        }
        *asked = Some(Instant::now());
        if self.width.swap(width, Ordering::Relaxed) != width {
            if let Some(size) = self.size.locked().as_ref() {
                size.set_property("caps", Self::caps(width));
            }
        }
        let seq = self.seq.load(Ordering::Acquire);
        self.wanted.store(true, Ordering::Release);
        Ask::Asked(seq)
    }

    /// The JPEG encoded after sequence number `seq`, if one was.
    pub fn after(&self, seq: u64) -> Option<Arc<Jpeg>> {
        self.latest
            .locked()
            .as_ref()
            .filter(|j| j.seq > seq)
            .cloned()
    }
}
