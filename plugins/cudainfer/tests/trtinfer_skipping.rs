//! Frames trtinfer passes on without inference for `interval`: which
//! frames are inferred, the tracker's predicted boxes between, their
//! markings in the meta, the region-of-interest params and the JSON lines,
//! streams out of phase in one batch. (`overload=skip`: trtinfer_overload.rs.)

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;
use gstcudainfer::Skip;

const FRAMES: usize = 12;

/// Each stream's detections by frame, for `branches` branches of
/// appsrc ! cudapreprocess ! trtinfer `infer[i]` ! infertrack ! appsink fed
/// the same decoded frames.
fn run_branches(
    tag: &str,
    infer: &[&str],
    frames: &[gst::Buffer],
    caps: &gst::Caps,
) -> Vec<Received> {
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
                json_path(tag, i).display()
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

/// Branch `i`'s JSON lines in run `tag` (tests run at the same time).
fn json_path(tag: &str, i: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "cudainfer-skipping-{}-{tag}-{i}.jsonl",
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
    let every = run_branches("every", &[""], &frames, &caps);
    let every = every[0].lock().unwrap().clone();
    let sparse = run_branches("sparse", &["interval=2"], &frames, &caps);
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
    let text = std::fs::read_to_string(json_path("sparse", 0)).unwrap();
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
    for tag in ["every", "sparse"] {
        let _ = std::fs::remove_file(json_path(tag, 0));
    }
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
    let every = run_branches("phase-every", &[""], &frames, &caps);
    let every = every[0].lock().unwrap().clone();
    let received = run_branches("phase", &["interval=1", "interval=2"], &frames, &caps);
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
        let _ = std::fs::remove_file(json_path("phase", i));
        let _ = std::fs::remove_file(json_path("phase-every", i));
    }
}
