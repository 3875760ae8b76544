//! SSD output parsing (model-type=ssd), as trtinfer runs it on a frame,
//! with boxes decoded by the model or raw regressions decoded against
//! `ssd-priors`: the parser from arbitrary shapes, output names and prior
//! descriptions, then decoding arbitrary scores and boxes (NaN, inf) with
//! an arbitrary threshold, keeping the most confident, and class-wise
//! NMS. Nothing may panic or allocate without bound, and each step keeps
//! its invariants (the background class is never a candidate).
#![no_main]

use libfuzzer_sys::fuzz_target;

use gst_cudainfer_fuzz::{check_detections, output_values, CappedAlloc, Reader};
use gstcudainfer::families::ssd::{Priors, SsdBoxes, SsdOptions};
use gstcudainfer::families::{self, FamilyOptions, ModelOutput, ModelShapes, ModelType};
use gstcudainfer::internals::ssd_prior_count;
use gstcudainfer::spec::MAX_TENSOR_SIDE;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// The input, in order (see `Reader`; `make_seeds.py` writes it): flags
/// (bit 0: raw boxes; bit 1: set both outputs' prior count to what the
/// input size and priors give, as a real export has, so that decoding is
/// reached; bit 2: leave the outputs unnamed, found by shape; bit 3: the
/// boxes output first), the `ssd-priors` text (string), the input shape,
/// the scores shape, the boxes shape, the confidence threshold, the NMS
/// threshold, max-detections (u16), then the values (f32, cycled through
/// scores, then boxes).
#[derive(Debug)]
struct Input {
    flags: u8,
    priors: String,
    input: Vec<i64>,
    scores: Vec<i64>,
    boxes: Vec<i64>,
    threshold: f32,
    nms_threshold: f32,
    max_detections: u16,
    values: Vec<f32>,
}

impl Input {
    fn read(data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        Self {
            flags: r.u8(),
            priors: r.string(),
            input: r.shape(),
            scores: r.shape(),
            boxes: r.shape(),
            threshold: r.f32(),
            nms_threshold: r.f32(),
            max_detections: r.u16(),
            values: r.rest_f32(),
        }
    }
}

/// The priors the input size and `ssd-priors` give, where both are valid.
fn prior_count(input: &[i64], raw: bool, text: &str) -> Option<i64> {
    let [_, _, h, w] = input else {
        return None;
    };
    let side = 1..=i64::from(MAX_TENSOR_SIDE);
    if !side.contains(h) || !side.contains(w) {
        return None;
    }
    let layout = if raw {
        Priors::parse(text).ok()?
    } else {
        Priors::ultraface()
    };
    i64::try_from(ssd_prior_count(&layout, *w as u32, *h as u32)).ok()
}

fuzz_target!(|data: &[u8]| {
    let data = Input::read(data);
    let raw = data.flags & 1 != 0;
    let (mut scores, mut boxes) = (data.scores, data.boxes);
    if data.flags & 2 != 0 && scores.len() == 3 && boxes.len() == 3 {
        if let Some(n) = prior_count(&data.input, raw, &data.priors) {
            (scores[1], boxes[1]) = (n, n);
        }
    }
    let named = data.flags & 4 == 0;
    let output = |name: &str, shape: &[i64]| ModelOutput {
        name: if named { name.into() } else { String::new() },
        shape: shape.to_vec(),
    };
    let mut outputs = vec![output("scores", &scores), output("boxes", &boxes)];
    let boxes_first = data.flags & 8 != 0;
    if boxes_first {
        outputs.reverse();
    }
    let shapes = ModelShapes {
        input: data.input,
        outputs,
    };
    let options = FamilyOptions {
        ssd: SsdOptions {
            boxes: if raw {
                SsdBoxes::Raw
            } else {
                SsdBoxes::Decoded
            },
            priors: data.priors,
        },
        ..Default::default()
    };
    let Ok(parser) = families::new_family(ModelType::Ssd, &shapes, &options) else {
        return;
    };
    // Scores then boxes, wherever they are among the model's outputs.
    let used = parser.outputs();
    assert_eq!(used.len(), 2);
    if named {
        assert_eq!(
            used[0].index,
            usize::from(boxes_first),
            "scores found by name"
        );
    }
    assert_eq!(used[0].dims.len(), 2);
    assert_eq!(used[1].dims[1], 4, "the second output read is the boxes");
    let priors = used[0].dims[0];
    assert_eq!(used[1].dims[0], priors);
    assert_eq!(parser.num_classes(), used[0].dims[1]);
    assert!(parser.num_classes() >= 2);

    let (scores_len, boxes_len) = (used[0].values(), used[1].values());
    let Some(values) = output_values(&data.values, scores_len + boxes_len) else {
        return;
    };
    let (scores, boxes) = values.split_at(scores_len);
    let candidates = parser.decode(&[scores, boxes], data.threshold);
    assert!(candidates.len() <= priors * (parser.num_classes() - 1));
    assert!(
        candidates.iter().all(|c| c.class_id >= 1),
        "class 0, the background, is never a candidate"
    );
    check_detections(
        &candidates,
        parser.num_classes(),
        data.threshold,
        data.max_detections,
        data.nms_threshold,
    );
});
