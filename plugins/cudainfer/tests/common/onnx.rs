//! ONNX models written by the tests, field by field (onnx.proto's field
//! numbers), so that no model file is kept in the repository.
#![allow(dead_code)]

/// `value` as a protobuf varint.
pub fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// The protobuf field `number` holding `payload` (length-delimited).
pub fn proto_bytes(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = varint(u64::from(number) << 3 | 2);
    out.extend(varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

/// The protobuf field `number` holding the integer `value`.
pub fn proto_int(number: u32, value: u64) -> Vec<u8> {
    [varint(u64::from(number) << 3), varint(value)].concat()
}

// onnx.proto's TensorProto.DataType values.
pub const FLOAT: u64 = 1;
pub const UINT8: u64 = 2;
pub const FLOAT16: u64 = 10;

/// One dimension of a declared shape.
#[derive(Clone, Copy)]
pub enum Dim {
    Fixed(u64),
    /// A symbolic dimension (`dim_param`), fixed only at run time.
    Named(&'static str),
}
pub use Dim::{Fixed, Named};

/// A graph input or output: name, element type, shape.
pub type Decl<'a> = (&'a str, u64, &'a [Dim]);

pub fn value_info((name, elem_type, shape): Decl) -> Vec<u8> {
    let dims: Vec<u8> = shape
        .iter()
        .flat_map(|d| {
            proto_bytes(
                1,
                &match d {
                    Fixed(v) => proto_int(1, *v),
                    Named(p) => proto_bytes(2, p.as_bytes()),
                },
            )
        })
        .collect();
    let tensor_type = [proto_int(1, elem_type), proto_bytes(2, &dims)].concat();
    [
        proto_bytes(1, name.as_bytes()),
        proto_bytes(2, &proto_bytes(1, &tensor_type)),
    ]
    .concat()
}

/// A graph node: `op` from `inputs` to `outputs`, with encoded attributes.
pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attributes: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = inputs
        .iter()
        .flat_map(|i| proto_bytes(1, i.as_bytes()))
        .collect();
    out.extend(outputs.iter().flat_map(|o| proto_bytes(2, o.as_bytes())));
    out.extend(proto_bytes(4, op.as_bytes()));
    out.extend(attributes.iter().flat_map(|a| proto_bytes(5, a)));
    out
}

/// A tensor attribute of zeros (AttributeProto TENSOR), for Constant.
pub fn zeros_attribute(name: &str, elem_type: u64, shape: &[u64]) -> Vec<u8> {
    let mut tensor: Vec<u8> = shape.iter().flat_map(|&d| proto_int(1, d)).collect();
    tensor.extend(proto_int(2, elem_type));
    let item_size = if elem_type == FLOAT16 { 2 } else { 4 };
    let len = shape.iter().product::<u64>() as usize * item_size;
    tensor.extend(proto_bytes(9, &vec![0u8; len]));
    [
        proto_bytes(1, name.as_bytes()),
        proto_bytes(5, &tensor),
        proto_int(20, 4),
    ]
    .concat()
}

/// An ONNX model (IR 8, opset 13) of `nodes` between `inputs` and
/// `outputs`: written here field by field (onnx.proto's numbers), so no
/// model file is kept in the repository.
pub fn onnx_model(name: &str, nodes: &[Vec<u8>], inputs: &[Decl], outputs: &[Decl]) -> Vec<u8> {
    let mut graph: Vec<u8> = nodes.iter().flat_map(|n| proto_bytes(1, n)).collect();
    graph.extend(proto_bytes(2, name.as_bytes()));
    graph.extend(inputs.iter().flat_map(|&d| proto_bytes(11, &value_info(d))));
    graph.extend(
        outputs
            .iter()
            .flat_map(|&d| proto_bytes(12, &value_info(d))),
    );
    let opset = [proto_bytes(1, b""), proto_int(2, 13)].concat();
    [
        proto_int(1, 8),
        proto_bytes(7, &graph),
        proto_bytes(8, &opset),
    ]
    .concat()
}

pub fn fixed(shape: &[u64]) -> Vec<Dim> {
    shape.iter().map(|&d| Fixed(d)).collect()
}

/// `bytes` in a file of this test process, for a model property.
pub fn temp_model(name: &str, bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("{name}_{}.onnx", std::process::id()));
    std::fs::write(&path, bytes).expect("temporary directory is writable");
    path.display().to_string()
}

// onnx.proto's TensorProto.DataType value for int64.
pub const INT64: u64 = 7;

/// An int64 tensor attribute (AttributeProto TENSOR), for Constant.
pub fn int64_attribute(name: &str, values: &[i64]) -> Vec<u8> {
    let mut tensor = proto_int(1, values.len() as u64);
    tensor.extend(proto_int(2, INT64));
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor.extend(proto_bytes(9, &raw));
    [
        proto_bytes(1, name.as_bytes()),
        proto_bytes(5, &tensor),
        proto_int(20, 4),
    ]
    .concat()
}

/// A YOLOX-shaped model for a 64x64 input with 2 classes and a dynamic
/// batch: its output [N, 84, 7] (8x8 + 4x4 + 2x2 anchors) is the first 588
/// input values of each frame. Nothing to learn from its detections, but it
/// runs in microseconds, so soak and churn tests push many frames through
/// the real elements and batches.
pub fn tiny_yolox_model() -> Vec<u8> {
    let constant = |name: &str, values: &[i64]| {
        node(
            "Constant",
            &[],
            &[name],
            &[int64_attribute("value", values)],
        )
    };
    onnx_model(
        "tiny_yolox",
        &[
            node("Flatten", &["images"], &["flat"], &[]),
            constant("starts", &[0]),
            constant("ends", &[84 * 7]),
            constant("axes", &[1]),
            node(
                "Slice",
                &["flat", "starts", "ends", "axes"],
                &["first"],
                &[],
            ),
            constant("shape", &[-1, 84, 7]),
            node("Reshape", &["first", "shape"], &["output"], &[]),
        ],
        &[(
            "images",
            FLOAT,
            &[Named("N"), Fixed(3), Fixed(64), Fixed(64)],
        )],
        &[("output", FLOAT, &[Named("N"), Fixed(84), Fixed(7)])],
    )
}
