//! The pure part of loading a model: reading the labels file's bytes and
//! deciding whether the model's inputs and outputs, as ONNX Runtime
//! describes them, fit a family. Plain data in, a decision out, so that
//! unit tests and fuzzers (`internals` feature) reach it without a session.

pub use super::error::{CheckError, LabelsError, Role};
use super::{MAX_INPUT_VALUES, MAX_LABELS_BYTES};
use crate::spec::ElementType;

/// A labels file's contents: line `i` names class `i`; a blank line is an
/// unnamed class (class-<id>), so it keeps its place. Blank lines at the end
/// name nothing. Names are trimmed. At most [`MAX_LABELS_BYTES`].
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<String>, LabelsError> {
    if bytes.len() as u64 > MAX_LABELS_BYTES {
        return Err(LabelsError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(LabelsError::NotUtf8)?;
    let mut labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while labels.last().is_some_and(|l| l.is_empty()) {
        labels.pop();
    }
    Ok(labels)
}

/// One input or output of a model, as ONNX Runtime describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelValue {
    pub name: String,
    pub kind: ValueKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A tensor: ONNX's name of its element type as export tools print it
    /// ("float32", "float16", ...) and its shape (`-1` for a symbolic
    /// dimension).
    Tensor { element: String, shape: Vec<i64> },
    /// Not a tensor (a sequence, a map...): how ONNX Runtime describes it.
    Other(String),
}

impl ModelValue {
    /// The shape, for a tensor.
    pub fn tensor_shape(&self) -> Option<&[i64]> {
        match &self.kind {
            ValueKind::Tensor { shape, .. } => Some(shape),
            ValueKind::Other(_) => None,
        }
    }
}

/// The element type of `value`, a float32 or float16 tensor; `role` is
/// "input" or "output". fp16 models run on both paths: the host converts at
/// the session's edges, the GPU path makes fp16 tensors and converts fp16
/// outputs before decoding, so no family sees anything but float32.
pub(crate) fn tensor_element(
    value: &ModelValue,
    role: Role,
    family: &str,
) -> Result<ElementType, CheckError> {
    match &value.kind {
        ValueKind::Tensor { element, .. } if element == "float32" => Ok(ElementType::Float32),
        ValueKind::Tensor { element, .. } if element == "float16" => Ok(ElementType::Float16),
        ValueKind::Tensor { element, .. } => Err(CheckError::ElementType {
            role,
            name: value.name.clone(),
            element: element.clone(),
            family: family.to_owned(),
        }),
        ValueKind::Other(other) => Err(CheckError::NotTensor {
            role,
            name: value.name.clone(),
            kind: other.clone(),
            family: family.to_owned(),
        }),
    }
}

/// What every family needs of the model's inputs and outputs, checked once
/// at load so that a wrong export fails here and says why, not inside ONNX
/// Runtime at the first frame.
pub fn check_model_io(
    inputs: &[ModelValue],
    outputs: &[ModelValue],
    family: &str,
) -> Result<(), CheckError> {
    if inputs.len() != 1 {
        return Err(CheckError::InputCount {
            count: inputs.len(),
            names: inputs.iter().map(|i| i.name.clone()).collect(),
            family: family.to_owned(),
        });
    }
    let Some(output) = outputs.first() else {
        return Err(CheckError::NoOutput);
    };
    tensor_element(&inputs[0], Role::Input, family)?;
    tensor_element(output, Role::Output, family)?;
    check_input_size(inputs[0].tensor_shape().unwrap_or_default())
}

/// Refuses inputs that would take gigabytes per frame (a mistyped export):
/// the model and the pre-processing would allocate them before any error.
/// The shapes a family is made from: the input's and every output's by
/// name. A value that is not a tensor has no shape, which no family takes.
pub fn model_shapes(input: &[i64], outputs: &[ModelValue]) -> crate::families::ModelShapes {
    crate::families::ModelShapes {
        input: input.to_vec(),
        outputs: outputs
            .iter()
            .map(|o| crate::families::ModelOutput {
                name: o.name.clone(),
                shape: o.tensor_shape().unwrap_or_default().to_vec(),
            })
            .collect(),
    }
}

pub fn check_input_size(shape: &[i64]) -> Result<(), CheckError> {
    let side = crate::spec::MAX_TENSOR_SIDE as i64;
    if let [_, _, h, w] = shape {
        if *h > side || *w > side {
            return Err(CheckError::InputTooLarge {
                height: *h,
                width: *w,
            });
        }
    }
    let values = shape
        .iter()
        .skip(1)
        .filter(|&&d| d > 0)
        .fold(1u64, |n, &d| n.saturating_mul(d as u64));
    if values > MAX_INPUT_VALUES {
        return Err(CheckError::InputValues { values });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_label_lines_keep_their_class_id() {
        let labels = parse_labels(b"person\n\ncar\r\n  \nbus\n\n\n").unwrap();
        assert_eq!(labels, ["person", "", "car", "", "bus"]);
        assert_eq!(parse_labels(b"a\nb").unwrap(), ["a", "b"]);
        assert!(parse_labels(b"").unwrap().is_empty());
    }

    #[test]
    fn labels_must_be_small_utf8() {
        assert!(matches!(
            parse_labels(b"person\n\xff\n"),
            Err(LabelsError::NotUtf8(_))
        ));
        let big = vec![b'\n'; MAX_LABELS_BYTES as usize + 1];
        assert_eq!(parse_labels(&big), Err(LabelsError::TooLarge));
    }

    fn tensor(name: &str, element: &str, shape: &[i64]) -> ModelValue {
        ModelValue {
            name: name.into(),
            kind: ValueKind::Tensor {
                element: element.into(),
                shape: shape.to_vec(),
            },
        }
    }

    #[test]
    fn model_io_decisions() {
        let image = [tensor("images", "float32", &[1, 3, 416, 416])];
        let output = [tensor("output", "float32", &[1, 3549, 85])];
        assert_eq!(check_model_io(&image, &output, "somefamily"), Ok(()));
        let e = check_model_io(&[], &output, "somefamily")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has 0 inputs ()"), "{e}");
        let e = check_model_io(&image, &[], "somefamily")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "the model has no output");
        let half = [tensor("output", "float16", &[1, 3549, 85])];
        assert_eq!(check_model_io(&image, &half, "somefamily"), Ok(()));
        assert_eq!(
            tensor_element(&half[0], Role::Output, "somefamily"),
            Ok(ElementType::Float16)
        );
        let bytes = [tensor("images", "uint8", &[1, 3, 416, 416])];
        let e = check_model_io(&bytes, &output, "somefamily")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'images' is uint8 but model-type=somefamily takes float32 or float16"),
            "{e}"
        );
        let doubles = [tensor("output", "float64", &[1, 3549, 85])];
        let e = check_model_io(&image, &doubles, "somefamily")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'output' is float64 but model-type=somefamily needs float32 or float16"),
            "{e}"
        );
        let seq = [ModelValue {
            name: "images".into(),
            kind: ValueKind::Other("Sequence".into()),
        }];
        let e = check_model_io(&seq, &output, "somefamily")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a tensor"), "{e}");
        let huge = [tensor("images", "float32", &[1, 3, 8192, 8192])];
        let e = check_model_io(&huge, &output, "somefamily")
            .unwrap_err()
            .to_string();
        assert!(e.contains("201326592 values"), "{e}");
    }
}
