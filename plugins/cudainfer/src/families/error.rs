//! Why a model's shapes do not fit the family chosen for it (or a family's
//! option does not fit the model): each variant keeps the numbers, and the
//! message says what the model has and what the family needs.

use std::fmt;

use super::ssd::PriorsError;
use super::{ModelOutput, MAX_OUTPUT_VALUES};
use crate::spec::MAX_TENSOR_SIDE;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("{family} expects an NCHW image input [N, 3, H, W], the model's input is {input:?}")]
    NotImage {
        family: &'static str,
        input: Vec<i64>,
    },
    #[error(
        "{family} needs a fixed input height and width, the model's input is {input:?}: \
         export the model with a fixed input size (for example 416x416)"
    )]
    NotFixedSize {
        family: &'static str,
        input: Vec<i64>,
    },
    #[error(
        "{family} supports inputs of at most {MAX_TENSOR_SIDE} on a side, the model's is {height}x{width}"
    )]
    InputTooLarge {
        family: &'static str,
        height: u32,
        width: u32,
    },
    #[error(
        "{family} needs input height and width that are multiples of 32, the model's are {height}x{width}"
    )]
    NotGridMultiple {
        family: &'static str,
        height: u32,
        width: u32,
    },
    /// A grid family's class count that would overflow the output.
    #[error(
        "the model's output {output:?} has more than {MAX_OUTPUT_VALUES} values per frame: \
         at most {max_classes} classes are supported with a {height}x{width} input"
    )]
    TooManyClasses {
        output: Vec<i64>,
        max_classes: u64,
        height: u32,
        width: u32,
    },
    #[error(
        "yolov8 with a {height}x{width} input has output [N, 4 + classes, {anchors}], \
         the model's output is {output:?}"
    )]
    Yolov8Output {
        height: u32,
        width: u32,
        anchors: usize,
        output: Vec<i64>,
    },
    #[error(
        "yolox's output has 3 dimensions [N, anchors, 5 + classes], the model's output is {output:?}"
    )]
    YoloxDimensions { output: Vec<i64> },
    #[error(
        "yolox with a {height}x{width} input has output [N, {anchors}, 5 + classes], the model's output is {output:?}"
    )]
    YoloxOutput {
        height: u32,
        width: u32,
        anchors: usize,
        output: Vec<i64>,
    },
    #[error(
        "classifier needs an output [N, classes] (one row of scores per image), \
         the model's output is {output:?}"
    )]
    ClassifierOutput { output: Vec<i64> },
    #[error(
        "raw needs outputs [N, ...] of a fixed size apart from the batch dimension N \
         (at most {MAX_OUTPUT_VALUES} values per image), the model's output '{name}' is {shape:?}"
    )]
    RawOutput { name: String, shape: Vec<i64> },
    #[error(
        "{SSD_NEEDS}, named scores and boxes or told apart by the boxes' last dimension, 4; \
         the model's outputs are {outputs}"
    )]
    SsdOutputsNotFound { outputs: Outputs },
    #[error(
        "{SSD_NEEDS}, with the same fixed number of priors and at least 2 classes; the model's \
         outputs are {outputs}"
    )]
    SsdOutputShapes { outputs: Outputs },
    #[error(
        "the model's scores output {scores:?} has more than {MAX_OUTPUT_VALUES} values per frame"
    )]
    SsdTooManyScores { scores: Vec<i64> },
    #[error("ssd-priors '{priors}': {source}")]
    SsdPriors { priors: String, source: PriorsError },
    #[error(
        "ssd-priors '{priors}' describe {count} priors for a {height}x{width} input, but \
         the model has {model}: set ssd-priors to the model's layout"
    )]
    SsdPriorCount {
        priors: String,
        count: u64,
        height: u32,
        width: u32,
        model: u64,
    },
}

const SSD_NEEDS: &str =
    "ssd needs two outputs, scores [N, priors, classes] (class 0 the background) \
                         and boxes [N, priors, 4]";

/// A model's outputs, shown as `name [shape], ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs(pub Vec<ModelOutput>);

impl fmt::Display for Outputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, o) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {:?}", o.name, o.shape)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;
    use crate::families::{new_family, FamilyOptions, ModelShapes, ModelType};

    #[test]
    fn a_bad_ssd_priors_text_keeps_its_priors_error_as_the_source() {
        let shapes = ModelShapes {
            input: vec![1, 3, 240, 320],
            outputs: vec![
                ModelOutput {
                    name: "scores".into(),
                    shape: vec![1, 4420, 2],
                },
                ModelOutput {
                    name: "boxes".into(),
                    shape: vec![1, 4420, 4],
                },
            ],
        };
        let mut options = FamilyOptions::default();
        options.ssd.boxes = crate::families::ssd::SsdBoxes::Raw;
        options.ssd.priors = "stride=8".into();
        let e = new_family(ModelType::Ssd, &shapes, &options)
            .err()
            .expect("an unknown key is refused");
        let ShapeError::SsdPriors { source, .. } = &e else {
            panic!("not an ssd-priors error: {e}");
        };
        assert_eq!(*source, PriorsError::UnknownKey("stride".into()));
        assert!(e
            .to_string()
            .starts_with("ssd-priors 'stride=8': unknown key 'stride'"));
        assert!(e.source().is_some_and(|s| s.is::<PriorsError>()));
    }
}
