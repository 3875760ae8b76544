//! Frames trtinfer passes on without inference: `interval` (which frames
//! are inferred, the tracker's predicted boxes between, their markings in
//! the meta, the region-of-interest params and the JSON lines, streams out
//! of phase in one batch) and `overload=skip` (latency held within
//! `latency-budget` on live streams that inference cannot keep up with,
//! skips counted and reported, against `block`, which falls behind).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;
use gstcudainfer::{FrameDetections, Skip};

const FRAMES: usize = 12;

/// Each stream's detections by frame, for `branches` branches of
/// appsrc ! cudapreprocess ! trtinfer `infer[i]` ! infertrack ! appsink fed
/// the same decoded frames.
fn run_branches(infer: &[&str], frames: &[gst::Buffer], caps: &gst::Caps) -> Vec<Received> {
    init();
    let description: Vec<String> = infer
        .iter()
        .enumerate()
        .map(|(i, props)| {
            format!(
                "appsrc name=src{i} format=time ! cudapreprocess ! trtinfer name=infer{i} model={} {props} \
                 ! infertrack min-hits=1 ! inferpublish name=pub{i} location={} \
                 ! appsink name=sink{i} sync=false",
                model(),
                json_path(i).display()
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&description.join(" "))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let received: Vec<Received> = (0..infer.len())
        .map(|i| collect_detections(&pipeline, &format!("sink{i}")))
        .collect();
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..infer.len() {
        feed(&pipeline, &format!("src{i}"), caps, frames, true);
    }
    let bus = pipeline.bus().unwrap();
    let mut ended = 0;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Eos(_) => {
                ended += 1;
                break;
            }
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    assert_eq!(ended, 1, "the pipeline did not end");
    pipeline.set_state(gst::State::Null).unwrap();
    received
}

fn json_path(i: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "cudainfer-skipping-{}-{i}.jsonl",
        std::process::id()
    ))
}

/// `interval=2`: frames 0, 3, 6, 9 are inferred (the same detections as
/// without interval), the others carry the tracker's boxes for the same
/// tracks, marked predicted, and the frame is marked skipped, in the Rust
/// meta, the region-of-interest `tracking` param and the JSON line.
#[test]
fn interval_infers_every_nth_frame_and_predicts_between() {
    let (caps, frames) = decoded_frames(FRAMES, 640, 360);
    let every = run_branches(&[""], &frames, &caps);
    let every = every[0].lock().unwrap().clone();
    let sparse = run_branches(&["interval=2"], &frames, &caps);
    let sparse = sparse[0].lock().unwrap().clone();
    assert_eq!(sparse.len(), FRAMES, "every frame comes out");
    let pts: Vec<u64> = sparse.iter().map(|(p, _)| *p).collect();
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "in order: {pts:?}");
    let mut last_ids: Vec<u64> = Vec::new();
    for (n, ((_, found), (_, reference))) in sparse.iter().zip(&every).enumerate() {
        if n % 3 == 0 {
            assert_eq!(found.skipped, None, "frame {n} inferred");
            assert!(same_detections(found, reference), "frame {n}");
            assert!(found.detections.iter().all(|d| !d.predicted));
            last_ids = found
                .detections
                .iter()
                .filter_map(|d| d.track.map(|t| t.id))
                .collect();
        } else {
            assert_eq!(found.skipped, Some(Skip::Interval), "frame {n} skipped");
            assert!(!found.detections.is_empty(), "frame {n}: no predictions");
            for d in &found.detections {
                assert!(d.predicted, "frame {n}: {d:?}");
                let id = d.track.expect("a predicted box has its track").id;
                assert!(last_ids.contains(&id), "frame {n}: track {id} not seen");
                // The dog barely moves in a third of a second: the
                // prediction stays on the last detection of its track.
                let seen = reference
                    .detections
                    .iter()
                    .map(|r| iou(r.corners(), d.corners()))
                    .fold(0.0, f32::max);
                assert!(
                    seen > 0.8,
                    "frame {n}: {d:?} far from every detection ({seen})"
                );
            }
        }
    }
    // JSON: skipped on the frame, predicted on each of its objects.
    let text = std::fs::read_to_string(json_path(0)).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), FRAMES);
    for (n, line) in lines.iter().enumerate() {
        let objects = line["objects"].as_array().unwrap();
        if n % 3 == 0 {
            assert!(line.get("skipped").is_none(), "{line}");
            assert!(objects.iter().all(|o| o.get("predicted").is_none()));
        } else {
            assert_eq!(line["skipped"], "interval", "{line}");
            assert!(objects.iter().all(|o| o["predicted"] == true), "{line}");
        }
    }
    let _ = std::fs::remove_file(json_path(0));
}

/// The region-of-interest metas of a predicted box say so.
#[test]
fn predicted_boxes_are_marked_in_the_roi_params() {
    init();
    let (caps, frames) = decoded_frames(4, 640, 360);
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time ! cudapreprocess ! trtinfer model={} interval=1 \
         ! infertrack min-hits=1 ! appsink name=sink sync=false",
        model()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let params = Arc::new(Mutex::new(Vec::new()));
    let store = params.clone();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().unwrap();
                let predicted: Vec<bool> = buffer
                    .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                    .filter_map(|roi| roi.param("tracking").map(|t| t.get::<bool>("predicted")))
                    .map(|p| p.unwrap())
                    .collect();
                store.lock().unwrap().push(predicted);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    feed(&pipeline, "src", &caps, &frames, true);
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None);
    let params = params.lock().unwrap();
    assert_eq!(params.len(), 4);
    for (n, frame) in params.iter().enumerate() {
        assert!(!frame.is_empty(), "frame {n} has no tracked objects");
        assert!(
            frame.iter().all(|&p| p == (n % 2 == 1)),
            "frame {n}: {frame:?}"
        );
    }
}

/// Two streams sharing one session, out of phase (interval 1 and 2): each
/// infers exactly its own frames, every frame comes out in order, and the
/// inferred frames' detections are those of a run without interval.
#[test]
fn streams_out_of_phase_batch_together() {
    let (caps, frames) = decoded_frames(FRAMES, 640, 360);
    let every = run_branches(&[""], &frames, &caps);
    let every = every[0].lock().unwrap().clone();
    let received = run_branches(&["interval=1", "interval=2"], &frames, &caps);
    for (stream, interval) in [(0usize, 1usize), (1, 2)] {
        let got = received[stream].lock().unwrap().clone();
        assert_eq!(got.len(), FRAMES, "stream {stream}");
        for (n, ((_, found), (_, reference))) in got.iter().zip(&every).enumerate() {
            let inferred = n % (interval + 1) == 0;
            assert_eq!(
                found.skipped.is_none(),
                inferred,
                "stream {stream} frame {n}"
            );
            if inferred {
                assert!(
                    same_detections(found, reference),
                    "stream {stream} frame {n}"
                );
            }
        }
    }
    for i in 0..2 {
        let _ = std::fs::remove_file(json_path(i));
    }
}

/// A live run of `streams` 30 fps cameras (videotestsrc) through YOLOX-nano
/// (dynamic batch) on the CPU, for `seconds`: each frame's latency
/// at the sink (clock now less its capture time), skip counts, messages, and
/// the session's run times.
struct LiveRun {
    latencies_ms: Vec<f64>,
    /// Frames per stream, and how many of them were inferred.
    frames: Vec<(usize, usize)>,
    skipped: Vec<u64>,
    messages: usize,
    run_p99_ms: f64,
}

fn live_run(streams: usize, infer: &str, seconds: u64) -> LiveRun {
    init();
    let description: Vec<String> = (0..streams)
        .map(|i| {
            format!(
                "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
                 ! cudapreprocess ! trtinfer name=infer{i} model={} max-batch-size={streams} \
                 max-frames-in-flight=16 {infer} \
                 ! infertrack ! appsink name=sink{i} sync=false",
                dynbatch_model()
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&description.join(" "))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let frames = Arc::new(Mutex::new(vec![(0usize, 0usize); streams]));
    for i in 0..streams {
        let sink = pipeline
            .by_name(&format!("sink{i}"))
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let (latencies, frames) = (latencies.clone(), frames.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().unwrap();
                    let captured = sample
                        .segment()
                        .and_then(|seg| seg.downcast_ref::<gst::ClockTime>().cloned())
                        .and_then(|seg| seg.to_running_time(buffer.pts()?));
                    if let (Some(now), Some(captured)) = (s.current_running_time(), captured) {
                        let ms = now.saturating_sub(captured).nseconds() as f64 / 1e6;
                        latencies.lock().unwrap().push(ms);
                    }
                    let inferred =
                        FrameDetections::from_buffer(buffer).is_some_and(|f| f.skipped.is_none());
                    let mut f = frames.lock().unwrap();
                    f[i].0 += 1;
                    f[i].1 += usize::from(inferred);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut messages = 0;
    let end = std::time::Instant::now() + Duration::from_secs(seconds);
    while std::time::Instant::now() < end {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            match msg.view() {
                gst::MessageView::Error(e) => panic!("{}", e.error()),
                gst::MessageView::Element(e)
                    if e.structure()
                        .is_some_and(|s| s.name() == "trtinfer-skipped") =>
                {
                    messages += 1;
                }
                _ => {}
            }
        }
    }
    let skipped: Vec<u64> = (0..streams)
        .map(|i| {
            pipeline
                .by_name(&format!("infer{i}"))
                .unwrap()
                .property("skipped")
        })
        .collect();
    let timing: Option<gst::Structure> = pipeline
        .by_name("infer0")
        .unwrap()
        .property::<Option<String>>("batch-timing")
        .and_then(|t| t.parse().ok());
    let run_p99_ms = timing
        .and_then(|t| t.get::<u64>("run-p99-us").ok())
        .unwrap_or(0) as f64
        / 1e3;
    pipeline.set_state(gst::State::Null).unwrap();
    let latencies_ms = std::mem::take(&mut *latencies.lock().unwrap());
    let frames = frames.lock().unwrap().clone();
    LiveRun {
        latencies_ms,
        frames,
        skipped,
        messages,
        run_p99_ms,
    }
}

fn p99(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) * 99 / 100]
}

/// Eight live cameras at 30 fps, more than YOLOX-nano infers on two CPU
/// cores (it kept up with four on idle cores): with overload=block
/// latency grows without bound; with
/// overload=skip it stays within latency-budget, every stream still gets
/// inferred frames, about as many as the others, and the skips are counted
/// and reported. The budget is
/// set from the session's run time measured in the block run (six times
/// its p99, at least 400 ms), since the test machine's speed is unknown: a
/// frame may wait for the run under way, then its own.
#[test]
fn overload_skip_holds_the_latency_budget_block_falls_behind() {
    const STREAMS: usize = 8;
    let block = live_run(STREAMS, "overload=block", 8);
    let budget_ms = (6.0 * block.run_p99_ms).max(400.0).ceil() as u64;
    let skip = live_run(
        STREAMS,
        &format!("overload=skip latency-budget={budget_ms}"),
        8,
    );
    let auto = live_run(STREAMS, &format!("latency-budget={budget_ms}"), 4);
    println!(
        "runs p99 {:.0} ms, budget {budget_ms} ms; block: p99 {:.0} ms, frames {:?}, skipped {:?}; \
         skip: p99 {:.0} ms, frames (out, inferred) {:?}, skipped {:?}, {} messages; auto: p99 {:.0} ms, skipped {:?}",
        block.run_p99_ms,
        p99(&block.latencies_ms),
        block.frames,
        block.skipped,
        p99(&skip.latencies_ms),
        skip.frames,
        skip.skipped,
        skip.messages,
        p99(&auto.latencies_ms),
        auto.skipped,
    );
    // block: nothing skipped, and the sinks fall seconds behind.
    assert!(block.skipped.iter().all(|&s| s == 0));
    assert!(
        p99(&block.latencies_ms) > 2.0 * budget_ms as f64,
        "block did not fall behind: p99 {:.0} ms",
        p99(&block.latencies_ms)
    );
    // skip: within the budget, each stream skipped some and inferred some.
    assert!(
        p99(&skip.latencies_ms) <= budget_ms as f64,
        "skip: p99 {:.0} ms over the {budget_ms} ms budget",
        p99(&skip.latencies_ms)
    );
    for (i, (&(out, inferred), &skipped)) in skip.frames.iter().zip(&skip.skipped).enumerate() {
        assert!(skipped > 0, "stream {i} skipped nothing");
        assert!(inferred > 0, "stream {i} was never inferred");
        assert!(out >= 30 * 6, "stream {i}: {out} frames in 8 s");
    }
    // Evenly: no stream gets twice the inferred frames of another.
    let inferred: Vec<usize> = skip.frames.iter().map(|f| f.1).collect();
    let (least, most) = (
        *inferred.iter().min().unwrap(),
        *inferred.iter().max().unwrap(),
    );
    assert!(2 * least >= most, "uneven: inferred {inferred:?}");
    assert!(
        skip.messages >= 2,
        "{} trtinfer-skipped messages",
        skip.messages
    );
    // auto on live sources skips too.
    assert!(auto.skipped.iter().any(|&s| s > 0));
}
