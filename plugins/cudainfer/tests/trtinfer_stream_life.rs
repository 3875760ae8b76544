//! Stream life on the CPU path: flushing seeks with frames in flight, the
//! end of a stream with frames in flight, restarts, and threshold changes
//! while playing. Frames are real (dog_1080p.mp4).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use gst::prelude::*;
use gstcudainfer::tensor::{Tensor, TensorStorage};
use gstcudainfer::tensor_meta;
use gstcudainfer::FrameDetections;

const DECODE: &str = "qtdemux ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=NV12";

/// Every frame of dog_1080p.mp4 and its detections, from one plain run.
fn reference() -> &'static BTreeMap<u64, Arc<FrameDetections>> {
    static REFERENCE: OnceLock<BTreeMap<u64, Arc<FrameDetections>>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        init();
        let pipeline = gst::parse::launch(&format!(
            "filesrc location={} ! {DECODE} ! cudapreprocess ! trtinfer model={} max-batch-size=1 \
             ! appsink name=sink sync=false",
            media("dog_1080p.mp4"),
            dynbatch_model()
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let received = collect_detections(&pipeline, "sink");
        assert_eq!(run_to_end(&pipeline).error, None);
        let got = std::mem::take(&mut *received.lock().unwrap());
        assert_eq!(got.len(), 300, "the clip has 300 frames");
        got.into_iter().collect()
    })
}

fn pull(sink: &gst_app::AppSink) -> gst::Buffer {
    sink.try_pull_sample(gst::ClockTime::from_seconds(30))
        .expect("a frame within 30 s: the pipeline stalled")
        .buffer_owned()
        .unwrap()
}

/// The pipeline `description` and its appsink `sink`.
fn with_sink(description: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    (pipeline, sink)
}

/// Seeks 8 times (back and forth, flushing, accurate) while frames are in
/// flight; after each seek the frames start at the target, follow each
/// other, and carry the detections of a plain run: no frame from before
/// the seek comes out after it, and the stream never stalls.
fn seeks_lose_nothing(infer: &str) {
    let reference = reference();
    let (pipeline, sink) = with_sink(&format!(
        "filesrc location={} ! {DECODE} ! cudapreprocess ! trtinfer model={} {infer} \
         ! appsink name=sink sync=false max-buffers=2",
        media("dog_1080p.mp4"),
        dynbatch_model()
    ));
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline
        .state(gst::ClockTime::from_seconds(30))
        .0
        .expect("prerolls");
    pipeline.set_state(gst::State::Playing).unwrap();
    for _ in 0..4 {
        pull(&sink);
    }
    let frame = 1_000_000_000u64 / 30;
    for target_ms in [3000u64, 1000, 6000, 2000, 8000, 500, 5000, 4000] {
        let target = target_ms * 1_000_000;
        pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::ClockTime::from_nseconds(target),
            )
            .expect("seek accepted");
        let mut last: Option<u64> = None;
        for i in 0..6 {
            let buffer = pull(&sink);
            let pts = buffer.pts().unwrap().nseconds();
            assert!(
                pts + frame / 2 >= target,
                "frame {i} after the seek to {target_ms} ms is from before it (pts {pts})"
            );
            if let Some(last) = last {
                assert!(
                    pts > last && pts - last < frame + frame / 2,
                    "after the seek to {target_ms} ms, frame at {pts} follows {last}"
                );
            } else {
                // The decoder's accurate seek starts a frame or two late on
                // this clip whatever follows it (checked with identity).
                assert!(
                    pts < target + 3 * frame,
                    "the first frame after the seek to {target_ms} ms is at {pts}"
                );
            }
            last = Some(pts);
            let got = FrameDetections::from_buffer(&buffer).expect("detections");
            let expected = reference.get(&pts).expect("a frame of the clip");
            assert!(
                same_detections(&got, expected),
                "at {pts} after the seek to {target_ms} ms: {got:?} vs {expected:?}"
            );
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn flushing_seeks_with_frames_in_flight_unbatched() {
    seeks_lose_nothing("max-batch-size=1 max-frames-in-flight=8");
}

#[test]
fn flushing_seeks_with_frames_in_flight_batched() {
    // A group of its own, so that it batches (tests share sessions by key).
    seeks_lose_nothing(
        "max-batch-size=4 batch-timeout=50 max-frames-in-flight=8 batch-group=seeks",
    );
}

/// Copies of `frames` one second later in the stream.
fn one_second_later(frames: &[gst::Buffer]) -> Vec<gst::Buffer> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.copy();
            let pts = f.pts().map(|p| p + gst::ClockTime::from_seconds(1));
            f.make_mut().set_pts(pts);
            f
        })
        .collect()
}

/// Waits (bounded) until `done` holds, polling.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

/// The errors posted on `pipeline`'s bus so far, as (element, text).
fn posted_errors(pipeline: &gst::Pipeline) -> Vec<(String, String)> {
    let bus = pipeline.bus().unwrap();
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error]))
        .filter_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some((
                m.src().map(|s| s.name().to_string()).unwrap_or_default(),
                e.error().to_string(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn one_failing_branch_does_not_stop_the_others() {
    let (caps, frames) = frames();
    let (pipeline, received) = branches(
        4,
        &format!(
            "model={} max-batch-size=8 batch-timeout=100 batch-group=one-fails",
            dynbatch_model()
        ),
    );
    // Branch 2's sixth frame gets a broken tensor, as a faulty element
    // upstream might attach.
    let preprocess = pipeline
        .by_name("infer2")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    let seen = std::sync::atomic::AtomicUsize::new(0);
    preprocess.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 5 {
            if let Some(buffer) = info.buffer_mut() {
                let buffer = buffer.make_mut();
                let good = tensor_meta::get(buffer).unwrap();
                // The right shape, so that it is batched with the others'
                // frames, but not the values to go with it.
                let bad = Tensor {
                    channels: good.channels,
                    height: good.height,
                    width: good.width,
                    storage: TensorStorage::Host(vec![0.0; 10]),
                    transform: good.transform,
                };
                tensor_meta::attach(buffer, Arc::new(bad));
            }
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..4 {
        feed(&pipeline, &format!("src{i}"), &caps, &frames, true);
    }
    wait_for("the three good branches have every frame", || {
        [0, 1, 3]
            .iter()
            .all(|&i| received[i].lock().unwrap().len() == FRAMES)
    });
    let errors = posted_errors(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        errors
            .iter()
            .any(|(src, text)| src == "infer2" && text.contains("the tensor holds 10 values")),
        "the failing branch's own error: {errors:?}"
    );
    // Branch 2's source may also report that its stream stopped.
    assert!(
        errors
            .iter()
            .all(|(src, _)| src == "infer2" || src == "src2"),
        "only the failing branch reports an error: {errors:?}"
    );
    let failed = received[2].lock().unwrap();
    assert!(
        failed.len() >= 5 && failed.len() < FRAMES,
        "{}",
        failed.len()
    );
    for i in [0, 1, 3] {
        let got = received[i].lock().unwrap();
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "branch {i} order");
    }
}

#[test]
fn confidence_threshold_zero_is_bounded_by_max_detections() {
    let (caps, frames) = decoded_frames(2, 1920, 1080);
    for (props, most) in [("", 300), ("max-detections=7", 7)] {
        let (pipeline, received) = branches(
            1,
            &format!("model={} confidence-threshold=0 {props}", dynbatch_model()),
        );
        feed(&pipeline, "src0", &caps, &frames, true);
        assert_eq!(run_to_end(&pipeline).error, None);
        let got = received[0].lock().unwrap();
        assert_eq!(got.len(), 2);
        for (_, d) in got.iter() {
            let n = d.detections.len();
            // NMS then drops the overlapping ones.
            assert!((1..=most).contains(&n), "{props}: {n} detections");
        }
    }
}

/// One branch with trtinfer `properties` (and the dynamic-batch model),
/// PLAYING, that has inferred the first `count` frames of the clip and is
/// waiting for more: its pipeline, what came out, and the frames' caps and
/// buffers.
fn playing_after(
    count: usize,
    properties: &str,
) -> (gst::Pipeline, Received, gst::Caps, Vec<gst::Buffer>) {
    let (caps, frames) = decoded_frames(count, 1920, 1080);
    let (pipeline, mut received) = branches(1, &format!("model={} {properties}", dynbatch_model()));
    let received = received.remove(0);
    pipeline.set_state(gst::State::Playing).unwrap();
    feed(&pipeline, "src0", &caps, &frames, false);
    wait_for("the first frames are out", || {
        received.lock().unwrap().len() == count
    });
    (pipeline, received, caps, frames)
}

#[test]
fn thresholds_changed_while_playing_take_effect() {
    let (pipeline, received, caps, frames) = playing_after(4, "confidence-threshold=0.3");
    let infer = pipeline.by_name("infer0").unwrap();
    infer.set_property("confidence-threshold", 0.8f64);
    infer.set_property("max-detections", 1u32);
    // The same frames again, later in the stream.
    let later = one_second_later(&frames);
    feed(&pipeline, "src0", &caps, &later, true);
    assert_eq!(run_to_end(&pipeline).error, None);
    let got = received.lock().unwrap();
    assert_eq!(got.len(), 8);
    for i in 0..4 {
        let before = &got[i].1.detections;
        let after = &got[i + 4].1.detections;
        assert!(before.iter().any(|d| d.confidence < 0.8), "{before:?}");
        // The most confident object, alone: greedy NMS keeps the best box.
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!(after[0], before[0]);
    }
}

#[test]
fn eos_with_frames_in_flight_loses_nothing() {
    let (caps, frames) = frames();
    let (pipeline, received) = branches(
        1,
        &format!(
            "model={} max-batch-size=4 batch-timeout=2000 max-frames-in-flight=8",
            dynbatch_model()
        ),
    );
    feed(&pipeline, "src0", &caps, &frames, true);
    assert_eq!(run_to_end(&pipeline).error, None);
    let got = received[0].lock().unwrap();
    let pts: Vec<u64> = got.iter().map(|(p, _)| *p).collect();
    let expected: Vec<u64> = frames.iter().map(|f| f.pts().unwrap().nseconds()).collect();
    assert_eq!(pts, expected);
}

#[test]
fn a_resolution_change_mid_stream_keeps_detections_right() {
    let (big_caps, big) = decoded_frames(3, 1920, 1080);
    let (small_caps, small) = decoded_frames(3, 640, 360);
    let infer = format!("model={} max-frames-in-flight=4", dynbatch_model());
    let alone = |caps: &gst::Caps, frames: &[gst::Buffer]| {
        let (pipeline, received) = branches(1, &infer);
        feed(&pipeline, "src0", caps, frames, true);
        assert_eq!(run_to_end(&pipeline).error, None);
        let got = std::mem::take(&mut *received[0].lock().unwrap());
        got
    };
    let expected: Vec<_> = alone(&big_caps, &big)
        .into_iter()
        .chain(alone(&small_caps, &small))
        .collect();

    let (pipeline, received) = branches(1, &infer);
    pipeline.set_state(gst::State::Playing).unwrap();
    feed(&pipeline, "src0", &big_caps, &big, false);
    let later = one_second_later(&small);
    feed(&pipeline, "src0", &small_caps, &later, true);
    assert_eq!(run_to_end(&pipeline).error, None);
    let got = received[0].lock().unwrap();
    assert_eq!(got.len(), 6);
    for (i, ((_, d), (_, e))) in got.iter().zip(&expected).enumerate() {
        assert!(!e.detections.is_empty());
        assert!(same_detections(d, e), "frame {i}: {d:?} vs {e:?}");
    }
}

#[test]
fn playing_to_null_and_back_50_times() {
    init();
    let (pipeline, sink) = with_sink(&format!(
        "videotestsrc pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! cudapreprocess ! trtinfer model={} max-frames-in-flight=4 ! appsink name=sink sync=false max-buffers=1",
        dynbatch_model()
    ));
    for cycle in 0..50 {
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut last = None;
        for _ in 0..3 {
            let pts = pull(&sink).pts().unwrap();
            assert!(last.is_none_or(|l| pts > l), "cycle {cycle}: order");
            last = Some(pts);
        }
        // Stopped with frames in flight.
        pipeline.set_state(gst::State::Null).unwrap();
        let errors = posted_errors(&pipeline);
        assert!(errors.is_empty(), "cycle {cycle}: {errors:?}");
    }
}

#[test]
fn a_scaler_between_the_elements_is_an_error() {
    let run = run(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=640,height=360 ! cudapreprocess ! videoscale \
         ! video/x-raw,width=320,height=180 ! trtinfer model={} ! appsink name=sink",
        dynbatch_model()
    ));
    let error = run.expect_error();
    assert!(
        error.contains("the frame is 320x180 but its tensor was made for a 640x360 frame"),
        "{error}"
    );
    assert!(run.buffers.is_empty());
}

#[test]
fn a_second_trtinfer_is_an_error_or_replaces_the_first() {
    let pipeline = |first: &str| {
        format!(
            "videotestsrc num-buffers=2 pattern=ball ! video/x-raw,width=640,height=360 ! cudapreprocess \
             ! trtinfer model={m} {first} confidence-threshold=0.01 ! trtinfer model={m} confidence-threshold=0.01 \
             ! appsink name=sink",
            m = dynbatch_model()
        )
    };
    let taken = run(&pipeline(""));
    assert!(
        taken
            .expect_error()
            .contains("already went through a trtinfer"),
        "{:?}",
        taken.error
    );
    let replaced = run(&pipeline("keep-tensor=true"));
    assert_eq!(replaced.error, None);
    assert!(
        replaced
            .warnings
            .iter()
            .any(|w| w.contains("replaces them")),
        "{:?}",
        replaced.warnings
    );
    for buffer in &replaced.buffers {
        let detections = FrameDetections::from_buffer(buffer).unwrap();
        let rois = buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .count();
        assert_eq!(rois, detections.detections.len(), "boxes not doubled");
        assert!(
            tensor_meta::get(buffer).is_none(),
            "the second trtinfer took the tensor"
        );
    }
}

#[test]
fn qos_drops_late_frames_before_inference_only_when_enabled() {
    let (caps, frames) = frames();
    for qos in [false, true] {
        let (pipeline, received) = branches(1, &format!("model={} qos={qos}", dynbatch_model()));
        pipeline.set_state(gst::State::Playing).unwrap();
        // The sink says it is a second behind: every frame of the first
        // half second is too late to show.
        let event = gst::event::Qos::new(
            gst::QOSType::Underflow,
            2.0,
            1_000_000_000,
            gst::ClockTime::ZERO,
        );
        let src = pipeline
            .by_name("infer0")
            .unwrap()
            .static_pad("src")
            .unwrap();
        src.send_event(event);
        feed(&pipeline, "src0", &caps, &frames, true);
        assert_eq!(run_to_end(&pipeline).error, None);
        let got = received[0].lock().unwrap().len();
        if qos {
            assert!(got < FRAMES, "qos=true: {got} of {FRAMES} frames out");
        } else {
            assert_eq!(got, FRAMES);
        }
    }
}

#[test]
fn latency_covers_the_batch_wait_and_the_measured_run() {
    let (caps, frames) = decoded_frames(4, 1920, 1080);
    let (pipeline, received) = branches(
        1,
        &format!(
            "model={} batch-timeout=7 max-frames-in-flight=3 batch-group=latency",
            dynbatch_model()
        ),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let sink = pipeline
        .by_name("infer0")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    let query_latency = || {
        let mut q = gst::query::Latency::new();
        let src = pipeline
            .by_name("infer0")
            .unwrap()
            .static_pad("src")
            .unwrap();
        assert!(src.query(&mut q));
        q.result()
    };
    let (_, before, _) = query_latency();
    assert_eq!(
        before,
        gst::ClockTime::from_mseconds(7),
        "before any batch: the timeout"
    );
    feed(&pipeline, "src0", &caps, &frames, false);
    wait_for("the frames are out", || {
        received[0].lock().unwrap().len() == 4
    });
    let (_, min, max) = query_latency();
    // A CPU run of YOLOX-nano takes milliseconds; the bound includes it,
    // and the queue of frames in flight (at 30 fps) is buffering on top.
    assert!(min > gst::ClockTime::from_mseconds(8), "min latency {min}");
    let max = max.expect("bounded");
    assert!(
        max >= min + gst::ClockTime::from_mseconds(3 * 33),
        "max latency {max} vs min {min}"
    );
    drop(sink);
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn allocation_asks_for_the_frames_held_in_flight() {
    let (pipeline, _, caps, _) = playing_after(1, "max-frames-in-flight=5");
    let mut query = gst::query::Allocation::new(Some(&caps), true);
    let sink = pipeline
        .by_name("infer0")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    assert!(sink.query(&mut query));
    let pools: Vec<_> = query.allocation_pools().collect();
    assert!(!pools.is_empty(), "a pool entry");
    assert!(
        pools.iter().all(|(_, _, min, _)| *min >= 6),
        "every pool keeps 5 in flight + 1: {pools:?}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

/// dog_1080p.mp4's H.264 as an elementary stream (Annex B byte-stream),
/// which a cut leaves playable up to the cut.
fn h264_stream() -> Vec<u8> {
    let run = run(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! appsink name=sink",
        media("dog_1080p.mp4")
    ));
    assert_eq!(run.error, None);
    run.buffers
        .iter()
        .flat_map(|b| b.map_readable().unwrap().to_vec())
        .collect()
}

/// Runs damaged H.264 (`bytes`, in a file with extension `ext`, parsed by
/// `parse`) through `avdec_h264 ! cudapreprocess ! trtinfer`: the run ends
/// (EOS or an error that is not trtinfer's), and what comes out is in order
/// and inferred.
fn damaged_clip_runs_to_an_end(name: &str, bytes: &[u8], parse: &str) -> Run {
    let path = std::env::temp_dir().join(format!("cudainfer-{name}-{}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let run = run(&format!(
        "filesrc location={} ! {parse} ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=NV12 \
         ! cudapreprocess ! trtinfer model={} ! appsink name=sink",
        path.display(),
        dynbatch_model()
    ));
    let _ = std::fs::remove_file(&path);
    if let Some(error) = &run.error {
        assert!(
            !error.contains("tensor"),
            "{name}: trtinfer failed: {error}"
        );
    }
    let pts: Vec<u64> = run
        .buffers
        .iter()
        .filter_map(|b| b.pts().map(|p| p.nseconds()))
        .collect();
    assert!(
        pts.windows(2).all(|w| w[0] < w[1]),
        "{name}: frames out of order"
    );
    assert!(run
        .buffers
        .iter()
        .all(|b| FrameDetections::from_buffer(b).is_some()));
    println!(
        "{name}: {} frames out, error {:?}, {} warnings",
        run.buffers.len(),
        run.error,
        run.warnings.len()
    );
    run
}

#[test]
fn truncated_h264_ends_cleanly() {
    let mut stream = h264_stream();
    stream.truncate(stream.len() * 6 / 10);
    let run = damaged_clip_runs_to_an_end("truncated.h264", &stream, "identity");
    assert_eq!(run.error, None, "a cut stream ends with EOS");
    assert!(
        (100..300).contains(&run.buffers.len()),
        "the frames before the cut: {}",
        run.buffers.len()
    );
    // A cut MP4 (its index is at the end) is the demuxer's error.
    let mut file = std::fs::read(media("dog_1080p.mp4")).unwrap();
    file.truncate(file.len() * 6 / 10);
    let run = damaged_clip_runs_to_an_end("truncated.mp4", &file, "qtdemux");
    assert!(
        run.expect_error().contains("no playable streams"),
        "{:?}",
        run.error
    );
}

#[test]
fn bit_flipped_h264_ends_cleanly() {
    let mut file = std::fs::read(media("dog_1080p.mp4")).unwrap();
    // Flip bits through the middle of the file (the coded frames), leaving
    // the container's index at the end alone.
    let (from, to) = (file.len() / 4, file.len() * 3 / 4);
    for i in (from..to).step_by(7919) {
        file[i] ^= 0x5a;
    }
    let run = damaged_clip_runs_to_an_end("flipped.mp4", &file, "qtdemux");
    assert!(run.buffers.len() > 100, "most frames still decode");
}
