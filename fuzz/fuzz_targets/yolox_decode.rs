//! YOLOX output parsing, as trtinfer runs it on a frame: the parser from
//! arbitrary model shapes (odd, negative, huge), then decoding an arbitrary
//! output (NaN, inf) with an arbitrary threshold, keeping the most
//! confident, and class-wise NMS. Nothing may panic or allocate without
//! bound, and each step keeps its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

use gst_cudainfer_fuzz::{CappedAlloc, Reader};
use gstcudainfer::parsers::{
    self, keep_most_confident, nms, Candidate, ModelOutput, ModelShapes, ModelType,
};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// Largest output decoded per run: decoding is linear, so bigger outputs
/// only slow the fuzzer down (the shapes are still checked).
const MAX_DECODED_VALUES: usize = 1 << 19;
/// Largest `max-detections` tried: NMS is quadratic in it by design.
const MAX_KEPT: usize = 1024;

/// The input, in order (see `Reader`; `make_seeds.py` writes it): flags
/// (bit 0: set the output's row count to the input's anchor count, as a
/// real export has, so that decoding is reached for many sizes), the input
/// shape, the output shape, the confidence threshold, the NMS threshold,
/// max-detections (u16), then the output's values (f32, cycled).
#[derive(Debug)]
struct Input {
    input: Vec<i64>,
    output: Vec<i64>,
    matching_rows: bool,
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
            matching_rows: flags & 1 != 0,
            threshold: r.f32(),
            nms_threshold: r.f32(),
            max_detections: r.u16(),
            values: r.rest_f32(),
        }
    }
}

/// Anchor rows of a YOLOX model with an `h`x`w` input, where that is small.
fn anchors(h: i64, w: i64) -> Option<i64> {
    if !(1..=1 << 16).contains(&h) || !(1..=1 << 16).contains(&w) {
        return None;
    }
    Some([8, 16, 32].iter().map(|s| (h / s) * (w / s)).sum())
}

fn same(a: &Candidate, b: &Candidate) -> bool {
    a.class_id == b.class_id
        && [a.confidence, a.x1, a.y1, a.x2, a.y2]
            .iter()
            .zip([b.confidence, b.x1, b.y1, b.x2, b.y2])
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fuzz_target!(|data: &[u8]| {
    let data = Input::read(data);
    let mut output = data.output;
    if data.matching_rows && data.input.len() == 4 && output.len() == 3 {
        if let Some(rows) = anchors(data.input[2], data.input[3]) {
            output[1] = rows;
        }
    }
    let shapes = ModelShapes {
        input: data.input,
        outputs: vec![ModelOutput {
            name: "output".into(),
            shape: output.clone(),
        }],
    };
    let Ok(parser) = parsers::new_parser(ModelType::Yolox, &shapes, &Default::default()) else {
        return;
    };
    let spec = parser.input_spec();
    assert_eq!(
        [spec.height as i64, spec.width as i64],
        shapes.input[2..4],
        "the spec is the model's input size"
    );
    let (rows, cols) = (output[1], output[2]);
    assert_eq!(parser.num_classes() as i64, cols - 5);
    let output_len = parser.outputs()[0].values();
    assert_eq!(output_len as i64, rows * cols);

    if output_len > MAX_DECODED_VALUES || data.values.is_empty() {
        return;
    }
    let output: Vec<f32> = data
        .values
        .iter()
        .copied()
        .cycle()
        .take(output_len)
        .collect();
    let candidates = parser.decode(&[&output], data.threshold);
    assert!(candidates.len() <= rows as usize * parser.num_classes());
    for c in &candidates {
        assert!((c.class_id as usize) < parser.num_classes());
        assert!(c.confidence > data.threshold);
    }

    let max = data.max_detections as usize % (MAX_KEPT + 1);
    let kept = keep_most_confident(candidates.clone(), max);
    assert_eq!(kept.len(), candidates.len().min(max));
    // The kept ones are a subsequence of the candidates (original order)...
    let mut rest = candidates.iter();
    for k in &kept {
        assert!(rest.any(|c| same(c, k)), "kept out of order or invented");
    }
    // ...and none dropped is more confident than one kept.
    if let Some(least) = kept.iter().map(|k| k.confidence).min_by(f32::total_cmp) {
        let better = |c: &&Candidate| c.confidence.total_cmp(&least).is_gt();
        assert_eq!(
            candidates.iter().filter(better).count(),
            kept.iter().filter(better).count(),
            "a dropped candidate is more confident than a kept one"
        );
    }

    let after = nms::class_wise_nms(kept.clone(), data.nms_threshold);
    assert!(after.len() <= kept.len());
    assert!(
        after
            .windows(2)
            .all(|w| w[0].confidence.total_cmp(&w[1].confidence).is_ge()),
        "NMS output is sorted by confidence"
    );
    if after.len() <= 512 {
        for (i, a) in after.iter().enumerate() {
            for b in &after[..i] {
                assert!(
                    a.class_id != b.class_id
                        || nms::iou(a, b).partial_cmp(&data.nms_threshold)
                            != Some(std::cmp::Ordering::Greater),
                    "two kept boxes of one class overlap by more than the threshold"
                );
            }
        }
    }
});
