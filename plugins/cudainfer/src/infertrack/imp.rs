use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::tracker::{Observation, Params, TrackBox, Tracker};
use crate::properties::MUTABLE_PLAYING;
use crate::{Detection, FrameDetections, TrackState};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "infertrack",
        gst::DebugColorFlags::empty(),
        Some("Multi-object tracker of trtinfer detections"),
    )
});

#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    params: Params,
    emit_lost: bool,
}

/// The stream's tracks and where in time the last tracked frame was.
#[derive(Default)]
struct State {
    tracker: Tracker,
    /// PTS of the last frame the tracker saw.
    last_pts: Option<gst::ClockTime>,
    /// One frame's duration, from the caps' framerate.
    frame_duration: Option<gst::ClockTime>,
}

impl State {
    /// Frames from the last tracked one to one at `pts` (of duration
    /// `duration`), at least 1: a gap in the timestamps (frames dropped
    /// upstream) advances the motion model by the frames missed. A PTS
    /// going backwards means a new timeline: the tracks are dropped.
    fn steps(
        &mut self,
        pts: Option<gst::ClockTime>,
        duration: Option<gst::ClockTime>,
        max_lost: u32,
    ) -> u32 {
        let (Some(pts), Some(last)) = (pts, self.last_pts) else {
            self.last_pts = pts.or(self.last_pts);
            return 1;
        };
        self.last_pts = Some(pts);
        if pts < last {
            gst::info!(
                CAT,
                "timestamp went back from {last} to {pts}: dropping the tracks"
            );
            self.tracker.reset();
            return 1;
        }
        let Some(frame) = self.frame_duration.or(duration).filter(|d| !d.is_zero()) else {
            return 1;
        };
        // Rounded to whole frames; past max-lost + 1 every track is gone
        // anyway, which bounds the work of a huge jump.
        let frames = (pts - last + frame / 2) / frame;
        frames.clamp(1, u64::from(max_lost) + 2) as u32
    }
}

#[derive(Default)]
pub struct InferTrack {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

#[glib::object_subclass]
impl ObjectSubclass for InferTrack {
    const NAME: &'static str = "GstInferTrack";
    type Type = super::InferTrack;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for InferTrack {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Params::default();
            vec![
                glib::ParamSpecDouble::builder("high-threshold")
                    .nick("High score threshold")
                    .blurb("Detections at or above this confidence are matched first and start new tracks; \
                            mutable while PLAYING")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.high_threshold as f64)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecDouble::builder("low-threshold")
                    .nick("Low score threshold")
                    .blurb("Detections from this confidence up to high-threshold only continue tracks that \
                            are already followed (ByteTrack's second pass); lower ones are ignored. At or above \
                            high-threshold: no second pass. Mutable while PLAYING")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.low_threshold as f64)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecDouble::builder("match-iou-threshold")
                    .nick("Match IoU threshold")
                    .blurb("Least IoU between a track's predicted box and a detection for them to match; \
                            mutable while PLAYING")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.match_iou as f64)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecUInt::builder("min-hits")
                    .nick("Hits to confirm")
                    .blurb("Matches (the first detection included) after which a track is confirmed; until \
                            then it is tentative and ends at its first miss. Mutable while PLAYING")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(d.min_hits)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecUInt::builder("max-lost")
                    .nick("Frames kept lost")
                    .blurb("Frames a confirmed track is kept, on its predicted box, while no detection \
                            matches it; it can take its id back in that time. Mutable while PLAYING")
                    .maximum(100_000)
                    .default_value(d.max_lost)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecBoolean::builder("class-aware")
                    .nick("Class-aware matching")
                    .blurb("Match a track only with detections of its own class; off, any class matches \
                            and the track takes the detection's class. Mutable while PLAYING")
                    .default_value(d.class_aware)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecBoolean::builder("emit-lost")
                    .nick("Emit lost tracks")
                    .blurb("Add a detection for each lost track, on its predicted box, with the class and \
                            confidence of its last detection and state lost, after the frame's detections; \
                            off, only detected objects are output. Mutable while PLAYING")
                    .default_value(false)
                    .flags(MUTABLE_PLAYING)
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let p = &mut s.params;
        match pspec.name() {
            "high-threshold" => p.high_threshold = value.get::<f64>().expect("type checked") as f32,
            "low-threshold" => p.low_threshold = value.get::<f64>().expect("type checked") as f32,
            "match-iou-threshold" => p.match_iou = value.get::<f64>().expect("type checked") as f32,
            "min-hits" => p.min_hits = value.get().expect("type checked"),
            "max-lost" => p.max_lost = value.get().expect("type checked"),
            "class-aware" => p.class_aware = value.get().expect("type checked"),
            "emit-lost" => s.emit_lost = value.get().expect("type checked"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let p = &s.params;
        match pspec.name() {
            "high-threshold" => (p.high_threshold as f64).to_value(),
            "low-threshold" => (p.low_threshold as f64).to_value(),
            "match-iou-threshold" => (p.match_iou as f64).to_value(),
            "min-hits" => p.min_hits.to_value(),
            "max-lost" => p.max_lost.to_value(),
            "class-aware" => p.class_aware.to_value(),
            "emit-lost" => s.emit_lost.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for InferTrack {}

impl ElementImpl for InferTrack {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Detection tracker",
                "Filter/Analyzer/Video",
                "Follows the objects trtinfer detects from frame to frame (Kalman motion model, IoU \
                 assignment, ByteTrack's two passes) and gives each detection a track id unique in the process",
                "gst-cudainfer developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::metadata_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for InferTrack {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = State::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = State::default();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // A flush (seek) or a new stream starts the tracks afresh; ids come
        // from the process-wide counter, so none is reused.
        if matches!(
            event.view(),
            gst::EventView::FlushStop(_) | gst::EventView::StreamStart(_)
        ) {
            gst::debug!(CAT, imp = self, "{:?}: dropping the tracks", event.type_());
            let mut state = self.state.lock().unwrap();
            state.tracker.reset();
            state.last_pts = None;
        }
        self.parent_sink_event(event)
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        // Caps without a framerate (or a variable one, 0/1) leave the
        // frame duration to the buffers.
        let fps = gst_video::VideoInfo::from_caps(incaps)
            .ok()
            .map(|i| i.fps());
        self.state.lock().unwrap().frame_duration = fps
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .and_then(|f| gst::ClockTime::SECOND.mul_div_round(f.denom() as u64, f.numer() as u64));
        Ok(())
    }

    fn transform_ip(
        &self,
        buffer: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        // Frames without results (no trtinfer ran on them) pass untouched
        // and do not advance the tracks.
        let Some(found) = FrameDetections::from_buffer(buffer) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let settings = *self.settings.lock().unwrap();
        if found.skipped.is_some() {
            // Not inferred (trtinfer's interval or overload): the tracks move
            // on their motion model, and their boxes stand in for detections.
            let predicted = {
                let mut state = self.state.lock().unwrap();
                let steps = state.steps(buffer.pts(), buffer.duration(), settings.params.max_lost);
                state.tracker.predict(steps)
            };
            let mut result = (*found).clone();
            result.detections = predicted
                .into_iter()
                .filter(|b| settings.emit_lost || b.track.state != TrackState::Lost)
                .map(|b| track_box(b, true))
                .collect();
            FrameDetections::remove_from(buffer);
            result.attach(buffer);
            return Ok(gst::FlowSuccess::Ok);
        }
        let observations: Vec<Observation> = found
            .detections
            .iter()
            .map(|d| Observation {
                class_id: d.class_id,
                label: d.label.clone(),
                confidence: d.confidence,
                corners: d.corners(),
            })
            .collect();
        let tracked = {
            let mut state = self.state.lock().unwrap();
            let steps = state.steps(buffer.pts(), buffer.duration(), settings.params.max_lost);
            state.tracker.update(&observations, steps, &settings.params)
        };
        let mut result = (*found).clone();
        for (d, track) in result.detections.iter_mut().zip(tracked.tracks) {
            d.track = track;
        }
        // One line per frame (label:id:state), which scripts/gpu-track.sh reads.
        gst::log!(
            CAT,
            imp = self,
            "tracks at {}: [{}]",
            buffer.pts().display(),
            {
                let each = result.detections.iter().filter_map(|d| {
                    d.track
                        .map(|t| format!("{}:{}:{}", d.label, t.id, t.state.as_str()))
                });
                each.collect::<Vec<_>>().join(" ")
            }
        );
        if settings.emit_lost {
            result
                .detections
                .extend(tracked.lost.into_iter().map(|l| track_box(l, false)));
        }
        FrameDetections::remove_from(buffer);
        result.attach(buffer);
        Ok(gst::FlowSuccess::Ok)
    }
}

/// A detection for a track's box that no detection of this frame gave:
/// `predicted` on a frame that was not inferred.
fn track_box(b: TrackBox, predicted: bool) -> Detection {
    Detection {
        class_id: b.class_id,
        label: b.label,
        confidence: b.confidence,
        x: b.corners[0],
        y: b.corners[1],
        width: b.corners[2] - b.corners[0],
        height: b.corners[3] - b.corners[1],
        classifications: Vec::new(),
        track: Some(b.track),
        predicted,
    }
}
