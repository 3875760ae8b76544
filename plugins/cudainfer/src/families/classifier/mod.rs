//! Whole-frame image classifiers (MobileNetV2 and the like): one output
//! `[N, classes]`, probabilities or logits, one row per image.
//!
//! Input preset: RGB, stretched to the model's H x W, (x − 127.5) / 127.5
//! so that 0..255 maps to −1..1 (MobileNetV2's); other classifiers set
//! cudapreprocess's `scale`/`mean`/`std`. The result is not boxes but the
//! `classifier-top-k` most probable classes above the confidence threshold
//! ([`FrameResult::Classes`]). No GPU kernel: one row of scores is cheap to
//! read on the host.

use super::{
    image_input_size, Candidate, ClassScore, DecodeLimits, FrameResult, ModelShapes, Family,
    OutputUse, ShapeError, MAX_OUTPUT_VALUES,
};
use crate::spec::InputSpec;

/// How the scores of a row become probabilities.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCudaInferClassifierActivation")]
pub enum Activation {
    #[default]
    #[enum_value(
        name = "Auto: softmax unless the row already is a distribution (all in 0..1, sum about 1)",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "Softmax: the output holds logits", nick = "softmax")]
    Softmax = 1,
    #[enum_value(name = "None: the output holds probabilities", nick = "none")]
    None = 2,
}

/// The `model-type=classifier` settings (trtinfer's `classifier-activation`,
/// `classifier-top-k`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClassifierOptions {
    pub activation: Activation,
    pub top_k: u32,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        Self {
            activation: Activation::Auto,
            top_k: 1,
        }
    }
}

pub struct ClassifierFamily {
    spec: InputSpec,
    num_classes: usize,
    options: ClassifierOptions,
}

impl ClassifierFamily {
    pub fn new(shapes: &ModelShapes, options: &ClassifierOptions) -> Result<Self, ShapeError> {
        let (width, height) = image_input_size("classifier", &shapes.input)?;
        let output = shapes.first_output();
        let classes = output
            .get(1)
            .copied()
            .filter(|&c| c > 0 && c as u64 <= MAX_OUTPUT_VALUES);
        let (2, Some(classes)) = (output.len(), classes) else {
            return Err(ShapeError::ClassifierOutput {
                output: output.to_vec(),
            });
        };
        Ok(Self {
            spec: InputSpec::stretched_rgb(width, height, 127.5, 127.5),
            num_classes: classes as usize,
            options: options.clone(),
        })
    }
}

/// Whether `row` already is a probability distribution.
fn is_distribution(row: &[f32]) -> bool {
    let sum: f32 = row.iter().sum();
    row.iter().all(|v| (0.0..=1.0).contains(v)) && (sum - 1.0).abs() <= 0.01
}

/// Softmax of `row`, shifted by its maximum so that large logits do not
/// overflow.
fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

impl Family for ClassifierFamily {
    fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn outputs(&self) -> Vec<OutputUse> {
        vec![OutputUse {
            index: 0,
            dims: vec![self.num_classes],
        }]
    }

    /// Each class above `threshold` as a candidate covering the whole
    /// input, in class order.
    fn decode(&self, outputs: &[&[f32]], threshold: f32) -> Vec<Candidate> {
        let row = outputs[0];
        let softmaxed;
        let probabilities = match self.options.activation {
            Activation::Softmax => {
                softmaxed = softmax(row);
                &softmaxed[..]
            }
            Activation::Auto if !is_distribution(row) => {
                softmaxed = softmax(row);
                &softmaxed[..]
            }
            _ => row,
        };
        probabilities
            .iter()
            .enumerate()
            .filter(|(_, &p)| p > threshold)
            .map(|(class_id, &confidence)| Candidate {
                class_id: class_id as u32,
                confidence,
                x1: 0.0,
                y1: 0.0,
                x2: self.spec.width as f32,
                y2: self.spec.height as f32,
            })
            .collect()
    }

    /// The `top_k` (and at most `max_detections`) most probable classes,
    /// most probable first; ties go to the lower class id.
    fn decode_frame(&self, outputs: &[&[f32]], limits: DecodeLimits) -> FrameResult {
        let mut classes: Vec<ClassScore> = self
            .decode(outputs, limits.confidence)
            .into_iter()
            .map(|c| ClassScore {
                class_id: c.class_id,
                confidence: c.confidence,
            })
            .collect();
        classes.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.class_id.cmp(&b.class_id))
        });
        classes.truncate((self.options.top_k as usize).min(limits.max_detections));
        FrameResult::Classes(classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::ModelOutput;
    use crate::spec::{ChannelOrder, ResizeMode};

    fn parser(
        output: Vec<i64>,
        activation: Activation,
        top_k: u32,
    ) -> Result<ClassifierFamily, ShapeError> {
        let shapes = ModelShapes {
            input: vec![1, 3, 224, 224],
            outputs: vec![ModelOutput {
                name: "softmax".into(),
                shape: output,
            }],
        };
        ClassifierFamily::new(&shapes, &ClassifierOptions { activation, top_k })
    }

    fn classes(p: &ClassifierFamily, row: &[f32], confidence: f32) -> Vec<(u32, f32)> {
        let limits = DecodeLimits {
            confidence,
            max_detections: 100,
        };
        match p.decode_frame(&[row], limits) {
            FrameResult::Classes(c) => c.iter().map(|c| (c.class_id, c.confidence)).collect(),
            _ => panic!("a classifier gives classes"),
        }
    }

    #[test]
    fn the_preset_maps_0_255_to_minus_1_1() {
        let p = parser(vec![1, 1001], Activation::Auto, 1).unwrap();
        let s = p.input_spec();
        let value = |x: f32| (x * s.pixel_scale - s.mean[0]) / s.std[0];
        assert_eq!((value(0.0), value(255.0)), (-1.0, 1.0));
        assert_eq!(
            (s.width, s.height, s.resize_mode),
            (224, 224, ResizeMode::Stretch)
        );
        assert_eq!(s.channel_order, ChannelOrder::Rgb);
    }

    #[test]
    fn refuses_outputs_that_are_not_rank_2() {
        for output in [vec![1, 1001, 1], vec![1001], vec![1, 0]] {
            let e = parser(output.clone(), Activation::Auto, 1)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("[N, classes]"), "{output:?}: {e}");
        }
    }

    #[test]
    fn probabilities_are_kept_and_logits_softmaxed() {
        let p = parser(vec![1, 3], Activation::Auto, 3).unwrap();
        assert_eq!(
            classes(&p, &[0.2, 0.5, 0.3], 0.0),
            [(1, 0.5), (2, 0.3), (0, 0.2)]
        );
        // Logits: softmax of (0, ln 2, ln 3) is (1/6, 2/6, 3/6).
        let logits = [0.0, 2f32.ln(), 3f32.ln()];
        let got = classes(&p, &logits, 0.0);
        let expected = [(2, 0.5), (1, 1.0 / 3.0), (0, 1.0 / 6.0)];
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g.0, e.0);
            assert!((g.1 - e.1).abs() < 1e-6, "{got:?}");
        }
        let forced = parser(vec![1, 3], Activation::Softmax, 1).unwrap();
        let got = classes(&forced, &[0.2, 0.5, 0.3], 0.0);
        assert_eq!(got[0].0, 1);
        assert!(
            got[0].1 < 0.4,
            "softmax of probabilities flattens them: {got:?}"
        );
        let none = parser(vec![1, 3], Activation::None, 1).unwrap();
        assert_eq!(classes(&none, &[2.0, 5.0, 1.0], 0.0), [(1, 5.0)]);
    }

    #[test]
    fn keeps_top_k_above_the_threshold() {
        let p = parser(vec![1, 4], Activation::Auto, 2).unwrap();
        let row = [0.1, 0.4, 0.4, 0.1];
        assert_eq!(classes(&p, &row, 0.0), [(1, 0.4), (2, 0.4)]);
        assert_eq!(classes(&p, &row, 0.5), []);
        let one = parser(vec![1, 4], Activation::Auto, 1).unwrap();
        assert_eq!(classes(&one, &row, 0.0), [(1, 0.4)]);
    }
}
