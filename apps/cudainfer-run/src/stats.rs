//! One camera's counters, written from its pipeline's streaming threads
//! (pad probes) and read by /metrics and the status table.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::locked::Locked;

/// Where a camera is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraState {
    /// Building and starting its pipeline.
    Connecting,
    /// Frames come out.
    Running,
    /// Failed; waiting for the next try.
    Retrying,
    /// A file played once reached its end.
    Finished,
    /// Being removed or the service is ending.
    Stopping,
}

impl CameraState {
    pub const ALL: [CameraState; 5] = [
        CameraState::Connecting,
        CameraState::Running,
        CameraState::Retrying,
        CameraState::Finished,
        CameraState::Stopping,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CameraState::Connecting => "connecting",
            CameraState::Running => "running",
            CameraState::Retrying => "retrying",
            CameraState::Finished => "finished",
            CameraState::Stopping => "stopping",
        }
    }
}

/// Latencies kept for the percentiles: the last this many frames.
const LATENCY_WINDOW: usize = 1024;
/// Output times kept for the frame rate.
const FPS_WINDOW: usize = 64;
/// Frames waiting for their output; more means they were dropped on the way.
const MAX_PENDING: usize = 4096;

#[derive(Default)]
struct Timing {
    /// (PTS, when it entered) of frames not yet out, in order.
    pending: VecDeque<(Option<gst::ClockTime>, Instant)>,
    latencies: VecDeque<Duration>,
    outputs: VecDeque<Instant>,
}

#[derive(Default)]
pub struct CameraStats {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub dropped: AtomicU64,
    pub reconnects: AtomicU64,
    /// Frames trtinfer passed on uninferred for overload, over the camera's
    /// runs (its element's count is per run).
    skipped_before: AtomicU64,
    skipped_run: AtomicU64,
    /// When trtinfer last reported skipping.
    last_skip: Mutex<Option<Instant>>,
    timing: Mutex<Timing>,
    state: Mutex<Option<CameraState>>,
    /// The last failure, redacted, for the API and the status table.
    last_error: Mutex<Option<String>>,
    /// Objects of the latest published frame by label.
    objects: Mutex<std::collections::BTreeMap<String, u32>>,
}

/// A snapshot for the readers.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub skipped: u64,
    pub state: CameraState,
    pub fps: f64,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub last_error: Option<String>,
    pub objects: std::collections::BTreeMap<String, u32>,
}

impl CameraStats {
    /// The labels of the latest published frame's objects.
    pub fn set_objects<'a>(&self, labels: impl Iterator<Item = &'a str>) {
        let mut objects = self.objects.locked();
        objects.clear();
        for label in labels {
            // Allocates only for a label not seen in this frame.
            match objects.get_mut(label) {
                Some(n) => *n += 1,
                None => {
                    objects.insert(label.to_string(), 1);
                }
            }
        }
    }

    /// trtinfer reported `total` frames skipped for overload in this run.
    pub fn skipping(&self, total: u64) {
        self.skipped_run.store(total, Ordering::Relaxed);
        *self.last_skip.locked() = Some(Instant::now());
    }

    /// A new run of the camera's pipeline starts its element's count at 0.
    pub fn new_run(&self) {
        let run = self.skipped_run.swap(0, Ordering::Relaxed);
        self.skipped_before.fetch_add(run, Ordering::Relaxed);
    }

    pub fn skipped(&self) -> u64 {
        self.skipped_before.load(Ordering::Relaxed) + self.skipped_run.load(Ordering::Relaxed)
    }

    /// Whether trtinfer reported skipping within `window`.
    pub fn skipped_within(&self, window: Duration) -> bool {
        self.last_skip
            .locked()
            .is_some_and(|t| t.elapsed() < window)
    }

    pub fn set_state(&self, state: CameraState) {
        *self.state.locked() = Some(state);
    }

    pub fn state(&self) -> CameraState {
        self.state.locked().unwrap_or(CameraState::Connecting)
    }

    pub fn set_error(&self, text: String) {
        *self.last_error.locked() = Some(text);
    }

    /// A decoded frame enters the inference branch.
    pub fn frame_in(&self, pts: Option<gst::ClockTime>) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        let mut t = self.timing.locked();
        if t.pending.len() == MAX_PENDING {
            t.pending.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        t.pending.push_back((pts, Instant::now()));
    }

    /// A frame leaves the results element. Frames that entered before it and
    /// did not come out were dropped on the way (order is kept).
    pub fn frame_out(&self, pts: Option<gst::ClockTime>) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut t = self.timing.locked();
        if let Some(pos) = t.pending.iter().position(|(p, _)| *p == pts) {
            for _ in 0..pos {
                t.pending.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            let (_, entered) = t.pending.pop_front().expect("found above");
            if t.latencies.len() == LATENCY_WINDOW {
                t.latencies.pop_front();
            }
            t.latencies.push_back(now - entered);
        }
        if t.outputs.len() == FPS_WINDOW {
            t.outputs.pop_front();
        }
        t.outputs.push_back(now);
    }

    /// A flush (loop seek) or a new pipeline: frames in flight are gone by
    /// design, not dropped.
    pub fn forget_in_flight(&self) {
        self.timing.locked().pending.clear();
    }

    pub fn snapshot(&self) -> Snapshot {
        let t = self.timing.locked();
        let fps = match (t.outputs.front(), t.outputs.back()) {
            // Stale when the last frame is older than a second or two.
            (Some(first), Some(last))
                if t.outputs.len() > 1 && last.elapsed() < Duration::from_secs(2) =>
            {
                (t.outputs.len() - 1) as f64 / (*last - *first).as_secs_f64().max(1e-6)
            }
            _ => 0.0,
        };
        let mut sorted: Vec<Duration> = t.latencies.iter().copied().collect();
        sorted.sort();
        let pct = |q: f64| {
            (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
        };
        Snapshot {
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            skipped: self.skipped(),
            state: self.state(),
            fps,
            p50: pct(0.5),
            p99: pct(0.99),
            last_error: self.last_error.locked().clone(),
            objects: self.objects.locked().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Option<gst::ClockTime> {
        Some(gst::ClockTime::from_mseconds(v))
    }

    #[test]
    fn frames_missing_from_the_output_are_dropped() {
        let s = CameraStats::default();
        for p in [0, 33, 66, 100] {
            s.frame_in(ms(p));
        }
        s.frame_out(ms(0));
        s.frame_out(ms(66)); // 33 never came out
        let snap = s.snapshot();
        assert_eq!((snap.frames_in, snap.frames_out, snap.dropped), (4, 2, 1));
        assert!(snap.p50.is_some() && snap.p99 >= snap.p50);
        s.forget_in_flight();
        s.frame_out(ms(100));
        assert_eq!(s.snapshot().dropped, 1);
    }
}
