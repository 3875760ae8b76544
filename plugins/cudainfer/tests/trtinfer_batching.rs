//! Batching across streams on the CPU path: several branches of one
//! pipeline, each `appsrc ! cudapreprocess ! trtinfer ! appsink`, share one
//! session. Frames are real (the first frames of dog_1080p.mp4).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::prelude::*;

#[test]
fn batched_results_equal_unbatched_ones_in_order() {
    let (caps, frames) = frames();
    let model = dynbatch_model();

    let (single, one) = branches(
        1,
        // Groups of their own: tests run in parallel in one process, and a
        // session made with max-batch-size=1 by another test must not be shared.
        &format!(
            "model={model} max-batch-size=1 max-frames-in-flight=1 batch-group=unbatched-reference"
        ),
    );
    feed(&single, "src0", &caps, &frames, true);
    assert_eq!(run_to_end(&single).error, None);
    let reference = std::mem::take(&mut *one[0].lock().unwrap());
    assert_eq!(reference.len(), FRAMES);

    let (batched, received) = branches(
        3,
        &format!(
            "model={model} max-batch-size=8 batch-timeout=200 max-frames-in-flight=4 batch-group=batched"
        ),
    );
    for i in 0..3 {
        feed(&batched, &format!("src{i}"), &caps, &frames, true);
    }
    assert_eq!(run_to_end(&batched).error, None);
    let largest: u32 = batched.by_name("infer0").unwrap().property("largest-batch");
    assert!(largest > 1, "the three streams were never batched together");

    for (i, received) in received.iter().enumerate() {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), FRAMES, "branch {i} lost frames");
        for ((pts, d), (ref_pts, r)) in got.iter().zip(&reference) {
            assert_eq!(pts, ref_pts, "branch {i}: frames out of order");
            assert!(
                same_detections(d, r),
                "branch {i} at {pts}: batched {d:?} unbatched {r:?}"
            );
        }
    }
    println!("largest batch: {largest}");
}

#[test]
fn a_fixed_batch_model_runs_one_frame_at_a_time_and_says_so() {
    let (caps, frames) = frames();
    let (pipeline, received) = branches(2, &format!("model={} max-batch-size=4", model()));
    for i in 0..2 {
        feed(&pipeline, &format!("src{i}"), &caps, &frames[..4], true);
    }
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None);
    assert!(
        ended
            .warnings
            .iter()
            .any(|w| w.contains("takes 1 frame(s) per run (fixed batch dimension)")),
        "no warning: {:?}",
        ended.warnings
    );
    let largest: u32 = pipeline
        .by_name("infer0")
        .unwrap()
        .property("largest-batch");
    assert_eq!(largest, 1);
    assert_eq!(received[1].lock().unwrap().len(), 4);
}

/// A fixed-batch model serves several streams with a pool of sessions:
/// runs overlap (`concurrent-runs`), and every stream gets its frames in
/// order with the results of one session alone.
#[test]
fn a_pool_of_sessions_runs_a_fixed_batch_model_for_many_streams_at_once() {
    let (caps, frames) = frames();
    let run = |sessions: u32, group: &str| {
        let (pipeline, received) = branches(
            3,
            &format!("model={} sessions={sessions} batch-group={group}", model()),
        );
        for i in 0..3 {
            feed(&pipeline, &format!("src{i}"), &caps, &frames, true);
        }
        assert_eq!(run_to_end(&pipeline).error, None);
        let concurrent: u32 = pipeline
            .by_name("infer0")
            .unwrap()
            .property("concurrent-runs");
        let received: Vec<_> = received
            .iter()
            .map(|r| std::mem::take(&mut *r.lock().unwrap()))
            .collect();
        (concurrent, received)
    };
    let (one_at_a_time, reference) = run(1, "pool-of-one");
    assert_eq!(one_at_a_time, 1);
    let (concurrent, pooled) = run(3, "pool-of-three");
    assert!(
        concurrent > 1,
        "three sessions and three streams, but never two runs at once"
    );
    for (i, (got, want)) in pooled.iter().zip(&reference).enumerate() {
        assert_eq!(got.len(), FRAMES, "branch {i} lost frames");
        for ((pts, d), (ref_pts, r)) in got.iter().zip(want) {
            assert_eq!(pts, ref_pts, "branch {i}: frames out of order");
            assert!(same_detections(d, r), "branch {i} at {pts}: {d:?} vs {r:?}");
        }
    }
    println!("concurrent runs with 3 sessions: {concurrent}");
}

#[test]
fn a_stalled_stream_does_not_hold_back_the_others() {
    let (caps, frames) = frames();
    let (pipeline, received) = branches(
        2,
        &format!(
            "model={} max-batch-size=8 batch-timeout=20",
            dynbatch_model()
        ),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    // Branch 0 sends one frame and then nothing, not even EOS.
    feed(&pipeline, "src0", &caps, &frames[..1], false);
    feed(&pipeline, "src1", &caps, &frames, true);
    let done = || received[1].lock().unwrap().len() == FRAMES;
    // A guard against hanging, not a timing: the frames need a few seconds.
    for _ in 0..600 {
        if done() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stalled_got = received[0].lock().unwrap().len();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        done(),
        "the running branch was held back by the stalled one"
    );
    assert!(stalled_got <= 1);
}

#[test]
fn branches_join_and_leave_while_playing() {
    let (caps, frames) = frames();
    let model = dynbatch_model();
    let infer = format!("model={model} max-batch-size=8 batch-timeout=20");
    let (pipeline, received) = branches(1, &infer);
    pipeline.set_state(gst::State::Playing).unwrap();
    feed(&pipeline, "src0", &caps, &frames[..FRAMES / 2], false);

    // A second branch joins while the first is playing, runs to its EOS and
    // is removed; the first then goes on.
    let joined = gst::parse::bin_from_description(
        &format!("appsrc name=src1 format=time ! cudapreprocess ! trtinfer {infer} ! appsink name=sink1 sync=false"),
        false,
    )
    .unwrap();
    let sink1 = joined
        .by_name("sink1")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let count = Arc::new(Mutex::new(0usize));
    let c = count.clone();
    sink1.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                *c.lock().unwrap() += 1;
                Ok(gst::FlowSuccess::Ok)
            })
            .eos(move |_| {
                let _ = tx.send(());
            })
            .build(),
    );
    pipeline.add(&joined).unwrap();
    joined.sync_state_with_parent().unwrap();
    feed(&pipeline, "src1", &caps, &frames, true);
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the joined branch reaches its EOS");
    joined.set_state(gst::State::Null).unwrap();
    pipeline.remove(&joined).unwrap();
    assert_eq!(
        *count.lock().unwrap(),
        FRAMES,
        "the joined branch lost frames"
    );

    feed(&pipeline, "src0", &caps, &frames[FRAMES / 2..], true);
    assert_eq!(run_to_end(&pipeline).error, None);
    let got = std::mem::take(&mut *received[0].lock().unwrap());
    assert_eq!(got.len(), FRAMES, "the first branch lost frames");
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "frames out of order"
    );
}
