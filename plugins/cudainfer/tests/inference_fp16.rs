//! fp16 models: float16 inputs and outputs run (on the host path here: the
//! input converted from the float32 tensor, the outputs to float32 before
//! the family's decoder), giving the float32 model's results within fp16
//! precision. The fp16 models are twins of the shared float32 ones made at
//! test time (common::onnx::fp16_twin: Cast nodes around the graph), so CI
//! needs no converted model file.

mod common;

use common::onnx::*;
use common::*;
use gstcudainfer::{Detection, RawTensor};

/// The twins round only the input and outputs to fp16: their boxes stay
/// within a fraction of a pixel.
const TWIN_IOU: f32 = 0.99;

fn shared_model(name: &str) -> std::path::PathBuf {
    shared_dir().join("models").join(name)
}

/// `picture` through `cudapreprocess ! trtinfer model={model} {properties}`:
/// the one frame's detections.
fn detect(picture: &str, model: &str, properties: &str) -> Vec<Detection> {
    let run = run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! cudapreprocess \
         ! trtinfer model={model} {properties} ! appsink name=sink",
        media(picture),
    ));
    assert_eq!(run.error, None);
    let all = run.detections();
    assert_eq!(all.len(), 1);
    all[0].detections.clone()
}

/// The fp16 twin of the shared model `name` in a temporary file.
fn twin(name: &str, input: &str, half_input: bool, half_outputs: bool) -> String {
    let bytes = std::fs::read(shared_model(name)).expect("the shared model");
    let tag = format!(
        "{}_{}{}",
        name.trim_end_matches(".onnx"),
        if half_input { "in16" } else { "in32" },
        if half_outputs { "out16" } else { "out32" }
    );
    temp_model(&tag, &fp16_twin(&bytes, input, half_input, half_outputs))
}

/// Each of `fp32` matched one to one with a detection of `fp16` of its class
/// at IoU >= `min_iou`, confidence within 0.01, and nothing more. Returns
/// the lowest IoU and the largest confidence difference.
fn assert_same_detections(fp32: &[Detection], fp16: &[Detection], min_iou: f32) -> (f32, f32) {
    assert!(!fp32.is_empty(), "the float32 model finds something");
    assert_same_objects("fp16 against float32", fp16, fp32, min_iou, 0.01)
}

#[test]
fn yolox_fp16_twins_find_what_the_float32_model_finds() {
    let thresholds = format!(
        "labels={} confidence-threshold=0.25 nms-threshold=0.45",
        labels()
    );
    let thresholds = thresholds.as_str();
    let fp32 = detect("dog.jpg", &model(), thresholds);
    for (half_input, half_outputs) in [(true, true), (true, false), (false, true)] {
        let path = twin("yolox_nano.onnx", "images", half_input, half_outputs);
        let fp16 = detect("dog.jpg", &path, thresholds);
        let _ = std::fs::remove_file(&path);
        let (lowest_iou, largest_diff) = assert_same_detections(&fp32, &fp16, TWIN_IOU);
        eprintln!(
            "yolox_nano fp16 input {half_input}, outputs {half_outputs}: {} detections, \
             lowest IoU {lowest_iou:.4}, largest confidence difference {largest_diff:.4}",
            fp16.len()
        );
    }
}

/// SSD reads two outputs (scores and box offsets from the priors): both
/// converted. The raw-boxes model, since the decoded one's boxes are
/// fractions of the frame, where fp16's 2^-11 steps are half a pixel: IoU
/// 0.988 on a 22-pixel face, fp16's precision rather than the plugin's.
#[test]
fn ultraface_fp16_twin_finds_the_float32_models_faces() {
    let properties = "model-type=ssd ssd-boxes=raw confidence-threshold=0.7 nms-threshold=0.3";
    let name = "ultraface_version-RFB-320_without_postprocessing.onnx";
    let fp32 = detect(
        "faces.jpg",
        &shared_model(name).display().to_string(),
        properties,
    );
    let path = twin(name, "input", true, true);
    let fp16 = detect("faces.jpg", &path, properties);
    let _ = std::fs::remove_file(&path);
    let (lowest_iou, largest_diff) = assert_same_detections(&fp32, &fp16, TWIN_IOU);
    eprintln!(
        "ultraface fp16: {} faces, lowest IoU {lowest_iou:.4}, largest confidence difference {largest_diff:.4}",
        fp16.len()
    );
}

/// model-type=raw hands an fp16 output on as float32: tiny_yolox_model's
/// output is its input's first values, so the fp16 twin's output is the
/// float32 model's rounded to fp16 (relative error at most 2^-11).
#[test]
fn raw_hands_an_fp16_output_on_as_float32() {
    let raw = |model: &[u8], tag: &str| -> RawTensor {
        let path = temp_model(tag, model);
        let run = run(&format!(
            "filesrc location={} ! jpegdec ! videoconvert ! cudapreprocess width=64 height=64 \
             ! trtinfer model={path} model-type=raw ! appsink name=sink",
            media("dog.jpg")
        ));
        let _ = std::fs::remove_file(&path);
        assert_eq!(run.error, None);
        let mut tensors = RawTensor::from_buffer(&run.buffers[0]).expect("the raw outputs meta");
        assert_eq!(tensors.len(), 1);
        tensors.remove(0)
    };
    let fp32_model = tiny_yolox_model();
    let fp32 = raw(&fp32_model, "tiny_fp32");
    let fp16 = raw(&fp16_twin(&fp32_model, "images", true, true), "tiny_fp16");
    assert_eq!(fp16.name, "output_fp16");
    assert_eq!(fp16.shape, fp32.shape);
    assert_eq!(fp16.shape, [1, 84, 7]);
    let mut largest = 0f32;
    for (h, f) in fp16.data.iter().zip(&fp32.data) {
        let error = (h - f).abs();
        assert!(error <= f.abs() * 2f32.powi(-11), "{h} vs {f}");
        largest = largest.max(error);
    }
    assert!(
        fp32.data.iter().any(|&v| v.fract() != 0.0 && v > 2.0),
        "the image's values are not all whole or tiny (the test would show nothing)"
    );
    eprintln!("raw fp16 output: largest difference {largest} over 588 values");
}

/// A model converted to float16 throughout (weights and arithmetic too:
/// scripts/make-fp16-model.py on yolox_nano.onnx), named by
/// CUDAINFER_FP16_MODEL: not in CI, which keeps no such file. Its own fp16
/// arithmetic moves boxes more than the twins' rounding at the edges, so
/// IoU >= 0.95 (as the GPU path against the CPU path).
#[test]
fn a_converted_fp16_yolox_finds_what_the_float32_model_finds() {
    let Ok(path) = std::env::var("CUDAINFER_FP16_MODEL") else {
        eprintln!("skipped: set CUDAINFER_FP16_MODEL to yolox_nano.onnx converted by scripts/make-fp16-model.py");
        return;
    };
    let thresholds = format!(
        "labels={} confidence-threshold=0.25 nms-threshold=0.45",
        labels()
    );
    let fp32 = detect("dog.jpg", &model(), &thresholds);
    let fp16 = detect("dog.jpg", &path, &thresholds);
    // Measured: IoU 0.9745 on the car (a pixel off at its top edge),
    // confidences within 0.005.
    let (lowest_iou, largest_diff) = assert_same_detections(&fp32, &fp16, 0.95);
    eprintln!(
        "converted fp16 yolox_nano: {} detections, lowest IoU {lowest_iou:.4}, largest confidence difference {largest_diff:.4}",
        fp16.len()
    );
}
