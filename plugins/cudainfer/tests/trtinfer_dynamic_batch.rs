//! yolov12n edited into a dynamic-batch model (scripts/make-dynamic-batch.py)
//! batches frames of several streams into one run on the CPU path, with the
//! detections of the original fixed-batch export on every frame.
//!
//! The edited model is not in the shared data: it is taken from
//! `$CUDAINFER_DYNBATCH_MODEL`, else `/tmp/heavy-models/yolov12n_dynbatch.onnx`
//! (where the script's documented run writes it), else made here with
//! `$CUDAINFER_PYTHON` (default `python3`) if that Python has onnx,
//! onnxruntime, numpy and Pillow; otherwise the test says why and skips.

mod common;

use std::path::PathBuf;

use common::*;
use gst::prelude::*;

/// Where the edited model is, or why there is none.
fn dynbatch_yolov12n() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CUDAINFER_DYNBATCH_MODEL") {
        let path = PathBuf::from(path);
        return if path.exists() {
            Ok(path)
        } else {
            Err(format!(
                "CUDAINFER_DYNBATCH_MODEL={} does not exist",
                path.display()
            ))
        };
    }
    let made = PathBuf::from("/tmp/heavy-models/yolov12n_dynbatch.onnx");
    if made.exists() {
        return Ok(made);
    }
    let ours = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("yolov12n_dynbatch.onnx");
    if ours.exists() {
        return Ok(ours);
    }
    let python = std::env::var("CUDAINFER_PYTHON").unwrap_or_else(|_| "python3".into());
    let usable = std::process::Command::new(&python)
        .args(["-c", "import numpy, onnx, onnxruntime, PIL"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        return Err(format!(
            "no CUDAINFER_DYNBATCH_MODEL, no {}, and {python} lacks onnx/onnxruntime/numpy/Pillow \
             to make it (set CUDAINFER_PYTHON to one that has them)",
            made.display()
        ));
    }
    // Written beside and renamed, so a concurrent run never reads half a file.
    let partial = ours.with_extension("partial.onnx");
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("scripts/make-dynamic-batch.py"))
        .args([&shared_model("yolov12n.onnx"), partial.to_str().unwrap()])
        .env("CUDAINFER_SHARED_DIR", shared_dir())
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    // The script's own check failing is a failure of the edit, not a skip.
    assert!(
        out.status.success(),
        "make-dynamic-batch.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &ours).unwrap();
    Ok(ours)
}

#[test]
fn dynamic_batch_yolov12n_batches_streams_with_the_fixed_models_detections() {
    let model = match dynbatch_yolov12n() {
        Ok(model) => model,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let (caps, frames) = frames();

    // The original export: a fixed batch of 1, one frame per run.
    let (single, one) = branches(
        1,
        &format!(
            "model={} model-type=yolov8 batch-group=heavy-fixed",
            shared_model("yolov12n.onnx")
        ),
    );
    feed(&single, "src0", &caps, &frames, true);
    assert_eq!(run_to_end(&single).error, None);
    let reference = std::mem::take(&mut *one[0].lock().unwrap());
    assert_eq!(reference.len(), FRAMES);
    let objects: usize = reference.iter().map(|(_, d)| d.detections.len()).sum();
    assert!(
        objects >= FRAMES,
        "the clip's dog and bicycle: {objects} detections in {FRAMES} frames"
    );

    // Three streams sharing one session of the edited model.
    let streams = 3;
    let (batched, received) = branches(
        streams,
        &format!(
            "model={} model-type=yolov8 max-batch-size=4 batch-timeout=500 \
             max-frames-in-flight=4 batch-group=heavy-dynbatch",
            model.display()
        ),
    );
    for i in 0..streams {
        feed(&batched, &format!("src{i}"), &caps, &frames, true);
    }
    assert_eq!(run_to_end(&batched).error, None);
    let largest: u32 = batched.by_name("infer0").unwrap().property("largest-batch");
    assert!(largest > 1, "the three streams were never batched together");

    let mut worst = (1.0f32, 0.0f32);
    for (i, received) in received.iter().enumerate() {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), FRAMES, "stream {i} lost frames");
        for ((pts, d), (ref_pts, r)) in got.iter().zip(&reference) {
            assert_eq!(pts, ref_pts, "stream {i}: frames out of order");
            let (overlap, diff) = assert_same_objects(
                &format!("stream {i} at {pts} ns"),
                &d.detections,
                &r.detections,
                0.999,
                1e-3,
            );
            worst = (worst.0.min(overlap), worst.1.max(diff));
        }
    }
    println!(
        "{} ({}): {streams} streams x {FRAMES} frames, largest batch {largest}, {objects} \
         detections per stream, lowest IoU {:.5}, largest confidence difference {:.6}",
        model.display(),
        std::fs::metadata(&model).map_or(0, |m| m.len()),
        worst.0,
        worst.1
    );
}
