//! Ultralytics (YOLOv8/YOLO11/YOLOv12) output parsing, as trtinfer runs it
//! on a frame: the parser from arbitrary model shapes, then decoding an
//! arbitrary channel-major output (NaN, inf) with an arbitrary threshold,
//! keeping the most confident, and class-wise NMS. Nothing may panic or
//! allocate without bound, and each step keeps its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

use gst_cudainfer_fuzz::{check_detections, output_values, CappedAlloc, Reader};
use gstcudainfer::parsers::{self, ModelOutput, ModelShapes, ModelType};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// The input, in order (see `Reader`; `make_seeds.py` writes it): flags
/// (bit 0: set the output's anchor count to the input's, as a real export
/// has, so that decoding is reached for many sizes), the input shape, the
/// output shape, the confidence threshold, the NMS threshold,
/// max-detections (u16), then the output's values (f32, cycled).
#[derive(Debug)]
struct Input {
    input: Vec<i64>,
    output: Vec<i64>,
    matching_anchors: bool,
    threshold: f32,
    nms_threshold: f32,
    max_detections: u16,
    values: Vec<f32>,
}

impl Input {
    fn read(data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        let flags = r.u8();
        Self {
            input: r.shape(),
            output: r.shape(),
            matching_anchors: flags & 1 != 0,
            threshold: r.f32(),
            nms_threshold: r.f32(),
            max_detections: r.u16(),
            values: r.rest_f32(),
        }
    }
}

/// Anchors of an Ultralytics model with an `h`x`w` input (strides 8, 16,
/// 32), where that is small.
fn anchors(h: i64, w: i64) -> Option<i64> {
    if !(1..=1 << 16).contains(&h) || !(1..=1 << 16).contains(&w) {
        return None;
    }
    Some([8, 16, 32].iter().map(|s| (h / s) * (w / s)).sum())
}

fuzz_target!(|data: &[u8]| {
    let data = Input::read(data);
    let mut output = data.output;
    if data.matching_anchors && data.input.len() == 4 && output.len() == 3 {
        if let Some(anchors) = anchors(data.input[2], data.input[3]) {
            output[2] = anchors;
        }
    }
    let shapes = ModelShapes {
        input: data.input,
        outputs: vec![ModelOutput {
            name: "output0".into(),
            shape: output.clone(),
        }],
    };
    let Ok(parser) = parsers::new_parser(ModelType::Yolov8, &shapes, &Default::default()) else {
        return;
    };
    let spec = parser.input_spec();
    assert_eq!(
        [spec.height as i64, spec.width as i64],
        shapes.input[2..4],
        "the spec is the model's input size"
    );
    let (channels, anchors) = (output[1], output[2]);
    assert_eq!(parser.num_classes() as i64, channels - 4);
    let output_len = parser.outputs()[0].values();
    assert_eq!(output_len as i64, channels * anchors);

    let Some(output) = output_values(&data.values, output_len) else {
        return;
    };
    let candidates = parser.decode(&[&output], data.threshold);
    assert!(candidates.len() <= anchors as usize * parser.num_classes());
    check_detections(
        &candidates,
        parser.num_classes(),
        data.threshold,
        data.max_detections,
        data.nms_threshold,
    );
});
