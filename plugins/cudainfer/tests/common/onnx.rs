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
pub const DOUBLE: u64 = 11;

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
    let item_size = match elem_type {
        FLOAT16 => 2,
        DOUBLE => 8,
        _ => 4,
    };
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

/// One field of a protobuf message.
#[derive(Clone, Copy)]
pub struct ProtoField<'a> {
    pub number: u32,
    /// Its whole encoding (key included).
    pub whole: &'a [u8],
    /// The payload of a length-delimited field.
    pub payload: Option<&'a [u8]>,
}

/// The top-level fields of the protobuf `message`, in order (wire types 0,
/// 1, 2 and 5: all that ONNX files use).
pub fn proto_fields(message: &[u8]) -> Vec<ProtoField<'_>> {
    fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return value;
            }
            shift += 7;
        }
    }
    let mut fields = Vec::new();
    let mut at = 0;
    while at < message.len() {
        let start = at;
        let key = read_varint(message, &mut at);
        let payload = match key & 7 {
            0 => {
                read_varint(message, &mut at);
                None
            }
            1 => {
                at += 8;
                None
            }
            2 => {
                let len = read_varint(message, &mut at) as usize;
                at += len;
                Some(&message[at - len..at])
            }
            5 => {
                at += 4;
                None
            }
            wire => panic!("protobuf wire type {wire} in an ONNX file"),
        };
        fields.push(ProtoField {
            number: (key >> 3) as u32,
            whole: &message[start..at],
            payload,
        });
    }
    fields
}

/// `message` with each field replaced by what `edit` makes of it.
fn rebuild(message: &[u8], edit: &dyn Fn(ProtoField) -> Vec<u8>) -> Vec<u8> {
    proto_fields(message).into_iter().flat_map(edit).collect()
}

/// `value_info` (a ValueInfoProto) renamed `name`, its tensor element type
/// `elem_type`, its shape kept.
fn retyped(value_info: &[u8], name: &str, elem_type: u64) -> Vec<u8> {
    rebuild(value_info, &|f| match (f.number, f.payload) {
        (1, _) => proto_bytes(1, name.as_bytes()),
        // TypeProto, then its tensor_type, whose field 1 is elem_type.
        (2, Some(type_proto)) => proto_bytes(
            2,
            &rebuild(type_proto, &|f| match (f.number, f.payload) {
                (1, Some(tensor)) => proto_bytes(
                    1,
                    &rebuild(tensor, &|f| match f.number {
                        1 => proto_int(1, elem_type),
                        _ => f.whole.to_vec(),
                    }),
                ),
                _ => f.whole.to_vec(),
            }),
        ),
        _ => f.whole.to_vec(),
    })
}

/// The name of a ValueInfoProto.
fn value_name(value_info: &[u8]) -> String {
    proto_fields(value_info)
        .into_iter()
        .find_map(|f| (f.number == 1).then(|| f.payload.unwrap().to_vec()))
        .map(|n| String::from_utf8(n).unwrap())
        .unwrap()
}

/// `model`, a float32 ONNX model, as an fp16 one from the outside: the
/// graph input named `input` (if `half_input`) and every graph output (if
/// `half_outputs`) become float16 (named `<name>_fp16`), through Cast nodes
/// to and from the unchanged float32 graph. The twin computes what the
/// model computes, on its input rounded to fp16, with its outputs rounded
/// to fp16: what a converted fp16 model gives at best.
pub fn fp16_twin(model: &[u8], input: &str, half_input: bool, half_outputs: bool) -> Vec<u8> {
    let cast = |from: &str, to: &str, elem_type: u64| {
        // AttributeProto: name 1, i 3, type 20 (INT = 2).
        let to_attribute = [
            proto_bytes(1, b"to"),
            proto_int(3, elem_type),
            proto_int(20, 2),
        ]
        .concat();
        proto_bytes(1, &node("Cast", &[from], &[to], &[to_attribute]))
    };
    let mut found_input = false;
    let mut graph_out = Vec::new();
    let mut output_casts = Vec::new();
    let fields = proto_fields(model);
    let graph = fields
        .iter()
        .find_map(|f| (f.number == 7).then_some(f.payload))
        .flatten()
        .expect("an ONNX model has a graph");
    for f in proto_fields(graph) {
        match (f.number, f.payload) {
            (11, Some(info)) if half_input && value_name(info) == input => {
                found_input = true;
                let renamed = format!("{input}_fp16");
                // The Cast first: nodes are in topological order.
                let mut first = cast(&renamed, input, FLOAT);
                first.extend(graph_out);
                graph_out = first;
                graph_out.extend(proto_bytes(11, &retyped(info, &renamed, FLOAT16)));
            }
            (12, Some(info)) if half_outputs => {
                let name = value_name(info);
                let renamed = format!("{name}_fp16");
                output_casts.extend(cast(&name, &renamed, FLOAT16));
                graph_out.extend(proto_bytes(12, &retyped(info, &renamed, FLOAT16)));
            }
            _ => graph_out.extend_from_slice(f.whole),
        }
    }
    assert!(found_input || !half_input, "the model has no input {input}");
    graph_out.extend(output_casts);
    fields
        .iter()
        .flat_map(|f| match f.number {
            7 => proto_bytes(7, &graph_out),
            _ => f.whole.to_vec(),
        })
        .collect()
}
