//! The model check at load, as trtinfer runs it: the inputs and outputs
//! ONNX Runtime describes (counts, element types, shapes) are accepted or
//! refused with a message; accepted ones then go to the family's parser,
//! which must build or refuse without panicking or allocating without
//! bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

use gst_cudainfer_fuzz::{CappedAlloc, Reader};
use gstcudainfer::families::{self, ModelType};
use gstcudainfer::inference::MAX_INPUT_VALUES;
use gstcudainfer::internals::{check_model_io, model_shapes, ModelValue, ValueKind};
use gstcudainfer::spec::MAX_TENSOR_SIDE;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// The input, in order (see `Reader`; `make_seeds.py` writes it): the
/// number of inputs and of outputs (a byte each, 0..=7), then each value:
/// its name (string), a kind byte (0 float32, 1 float16, 2 int64, 3 uint8,
/// 4 a tensor of a named element type, else not a tensor), for 4 the
/// element type's name and for others than 0-4 the description (string),
/// and for a tensor its shape.
fn read_values(data: &[u8]) -> (Vec<ModelValue>, Vec<ModelValue>) {
    let mut r = Reader::new(data);
    let (n_in, n_out) = (r.u8() % 8, r.u8() % 8);
    let value = |r: &mut Reader| {
        let name = r.string();
        let tensor = |element: &str, r: &mut Reader| ValueKind::Tensor {
            element: element.into(),
            shape: r.shape(),
        };
        let kind = match r.u8() {
            0 => tensor("float32", r),
            1 => tensor("float16", r),
            2 => tensor("int64", r),
            3 => tensor("uint8", r),
            4 => {
                let element = r.string();
                tensor(&element, r)
            }
            _ => ValueKind::Other(r.string()),
        };
        ModelValue { name, kind }
    };
    let inputs = (0..n_in).map(|_| value(&mut r)).collect();
    let outputs = (0..n_out).map(|_| value(&mut r)).collect();
    (inputs, outputs)
}

/// A tensor of an element type trtinfer takes (float16 is converted).
fn float_tensor(v: &ModelValue) -> bool {
    matches!(&v.kind, ValueKind::Tensor { element, .. } if element == "float32" || element == "float16")
}

fuzz_target!(|data: &[u8]| {
    let (inputs, outputs) = read_values(data);
    if let Err(why) = check_model_io(&inputs, &outputs, "yolox") {
        assert!(!why.to_string().is_empty());
        return;
    }
    // Accepted: one float32 or float16 image and first output, a bounded size.
    assert_eq!(inputs.len(), 1);
    assert!(float_tensor(&inputs[0]) && float_tensor(&outputs[0]));
    let input = inputs[0].tensor_shape().unwrap();
    let per_frame = input
        .iter()
        .skip(1)
        .filter(|&&d| d > 0)
        .fold(1u64, |n, &d| n.saturating_mul(d as u64));
    assert!(per_frame <= MAX_INPUT_VALUES);
    // What Model::load does next.
    let shapes = model_shapes(input, &outputs);
    match families::new_family(ModelType::Yolox, &shapes, &Default::default()) {
        Ok(parser) => {
            let spec = parser.input_spec();
            assert!(spec.width <= MAX_TENSOR_SIDE && spec.height <= MAX_TENSOR_SIDE);
            assert!(parser.num_classes() > 0);
            assert!(parser.outputs().iter().all(|o| o.values() > 0));
        }
        Err(why) => assert!(!why.to_string().is_empty()),
    }
});
