//! Whole-frame classification (model-type=classifier), as trtinfer runs it
//! on a frame: the parser from arbitrary shapes, then an arbitrary row of
//! scores (NaN, inf, huge logits) through each activation, the threshold,
//! top-k and max-detections. Nothing may panic or allocate without bound;
//! the classes come most probable first, each once, above the threshold,
//! and softmax of finite scores gives probabilities.
#![no_main]

use libfuzzer_sys::fuzz_target;

use gst_cudainfer_fuzz::{output_values, CappedAlloc, Reader};
use gstcudainfer::families::classifier::{Activation, ClassifierOptions};
use gstcudainfer::families::{
    self, DecodeLimits, FamilyOptions, FrameResult, ModelOutput, ModelShapes, ModelType,
};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// The input, in order (see `Reader`; `make_seeds.py` writes it): the
/// activation (a byte: 0 auto, 1 softmax, else none), top-k (u16), the
/// input shape, the output shape, the confidence threshold,
/// max-detections (u16), then the scores (f32, cycled).
#[derive(Debug)]
struct Input {
    activation: Activation,
    top_k: u16,
    input: Vec<i64>,
    output: Vec<i64>,
    threshold: f32,
    max_detections: u16,
    values: Vec<f32>,
}

impl Input {
    fn read(data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        Self {
            activation: match r.u8() {
                0 => Activation::Auto,
                1 => Activation::Softmax,
                _ => Activation::None,
            },
            top_k: r.u16(),
            input: r.shape(),
            output: r.shape(),
            threshold: r.f32(),
            max_detections: r.u16(),
            values: r.rest_f32(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let data = Input::read(data);
    let shapes = ModelShapes {
        input: data.input,
        outputs: vec![ModelOutput {
            name: "logits".into(),
            shape: data.output.clone(),
        }],
    };
    let options = FamilyOptions {
        classifier: ClassifierOptions {
            activation: data.activation,
            top_k: u32::from(data.top_k),
        },
        ..Default::default()
    };
    let Ok(parser) = families::new_family(ModelType::Classifier, &shapes, &options) else {
        return;
    };
    let classes = parser.num_classes();
    assert_eq!(classes as i64, data.output[1]);
    assert_eq!(parser.outputs()[0].values(), classes);

    let Some(row) = output_values(&data.values, classes) else {
        return;
    };
    let limits = DecodeLimits {
        confidence: data.threshold,
        max_detections: usize::from(data.max_detections),
    };
    let FrameResult::Classes(found) = parser.decode_frame(&[&row], limits) else {
        panic!("a classifier gives classes");
    };
    assert!(found.len() <= usize::from(data.top_k).min(limits.max_detections));
    // Once, not per class found: per class it is quadratic and times out.
    let all_finite = row.iter().all(|v| v.is_finite());
    for c in &found {
        assert!((c.class_id as usize) < classes);
        assert!(c.confidence > data.threshold);
        if data.activation == Activation::Softmax && all_finite {
            assert!(
                (0.0..=1.0).contains(&c.confidence),
                "softmax gave {}",
                c.confidence
            );
        }
    }
    // Most probable first, ties to the lower class id: so each class once.
    assert!(
        found.windows(2).all(|w| w[0]
            .confidence
            .total_cmp(&w[1].confidence)
            .then(w[1].class_id.cmp(&w[0].class_id))
            .is_gt()),
        "classes out of order or repeated: {found:?}"
    );
});
