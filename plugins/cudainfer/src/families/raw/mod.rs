//! `model-type=raw`: no decoding; every output of the model goes on the
//! buffer as it is ([`crate::meta::raw_outputs`]), for applications that parse
//! it themselves.
//!
//! Input preset: RGB, stretched to the model's H x W, values 0..255
//! (no scale, mean or std): the family knows nothing of the model, so
//! users set cudapreprocess's `resize-mode`, `channel-order`, `scale`,
//! `mean` and `std` to their model's normalisation. No GPU kernel: the
//! outputs are copied to the host whole anyway.

use super::{
    image_input_size, Candidate, DecodeLimits, FrameResult, ModelShapes, Family, OutputUse,
    ShapeError, MAX_OUTPUT_VALUES,
};
use crate::meta::raw_outputs::RawTensor;
use crate::spec::InputSpec;

/// One output as the family hands it on.
struct RawOutput {
    name: String,
    /// The model's shape with the batch dimension 1.
    shape: Vec<usize>,
}

pub struct RawFamily {
    spec: InputSpec,
    outputs: Vec<RawOutput>,
}

impl RawFamily {
    pub fn new(shapes: &ModelShapes) -> Result<Self, ShapeError> {
        let (width, height) = image_input_size("raw", &shapes.input)?;
        let outputs = shapes
            .outputs
            .iter()
            .map(|o| {
                // The first dimension is the batch; the others say how many
                // values one frame has, so they must be fixed.
                let frame: Option<Vec<usize>> = o
                    .shape
                    .iter()
                    .skip(1)
                    .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
                    .collect();
                let fits = |dims: &[usize]| {
                    dims.iter()
                        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                        .is_some_and(|n| n <= MAX_OUTPUT_VALUES)
                };
                match frame {
                    Some(dims) if !o.shape.is_empty() && fits(&dims) => Ok(RawOutput {
                        name: o.name.clone(),
                        shape: std::iter::once(1).chain(dims).collect(),
                    }),
                    _ => Err(ShapeError::RawOutput {
                        name: o.name.clone(),
                        shape: o.shape.clone(),
                    }),
                }
            })
            .collect::<Result<Vec<_>, ShapeError>>()?;
        Ok(Self {
            spec: InputSpec::stretched_rgb(width, height, 0.0, 1.0),
            outputs,
        })
    }
}

impl Family for RawFamily {
    fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    /// Unknown: the family does not interpret the outputs.
    fn num_classes(&self) -> usize {
        0
    }

    fn outputs(&self) -> Vec<OutputUse> {
        self.outputs
            .iter()
            .enumerate()
            .map(|(index, o)| OutputUse {
                index,
                dims: o.shape[1..].to_vec(),
            })
            .collect()
    }

    /// No candidates: the outputs are not decoded.
    fn decode(&self, _outputs: &[&[f32]], _threshold: f32) -> Vec<Candidate> {
        Vec::new()
    }

    /// The frame's part of every output, whatever the limits.
    fn decode_frame(&self, outputs: &[&[f32]], _limits: DecodeLimits) -> FrameResult {
        FrameResult::Tensors(
            self.outputs
                .iter()
                .zip(outputs)
                .map(|(o, data)| RawTensor {
                    name: o.name.clone(),
                    shape: o.shape.clone(),
                    data: data.to_vec(),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::ModelOutput;
    use crate::spec::{ChannelOrder, ResizeMode};

    fn parser(outputs: &[(&str, Vec<i64>)]) -> Result<RawFamily, ShapeError> {
        RawFamily::new(&ModelShapes {
            input: vec![1, 3, 320, 240],
            outputs: outputs
                .iter()
                .map(|(name, shape)| ModelOutput {
                    name: name.to_string(),
                    shape: shape.clone(),
                })
                .collect(),
        })
    }

    #[test]
    fn the_preset_is_stretched_rgb_0_255() {
        let p = parser(&[("out", vec![1, 4])]).unwrap();
        let s = p.input_spec();
        let value = |x: f32| (x * s.pixel_scale - s.mean[0]) / s.std[0];
        assert_eq!((value(0.0), value(255.0)), (0.0, 255.0));
        assert_eq!(
            (s.width, s.height, s.resize_mode, s.channel_order),
            (240, 320, ResizeMode::Stretch, ChannelOrder::Rgb)
        );
    }

    #[test]
    fn every_output_is_handed_on_with_a_batch_of_one() {
        let p = parser(&[("scores", vec![-1, 2, 3]), ("boxes", vec![4, 2])]).unwrap();
        assert_eq!(
            p.outputs(),
            [
                OutputUse {
                    index: 0,
                    dims: vec![2, 3]
                },
                OutputUse {
                    index: 1,
                    dims: vec![2]
                }
            ]
        );
        let scores = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let limits = DecodeLimits {
            confidence: 0.9,
            max_detections: 0,
        };
        let FrameResult::Tensors(t) = p.decode_frame(&[&scores, &[7.0, 8.0]], limits) else {
            panic!("raw gives tensors");
        };
        assert_eq!(
            t,
            [
                RawTensor {
                    name: "scores".into(),
                    shape: vec![1, 2, 3],
                    data: scores.to_vec()
                },
                RawTensor {
                    name: "boxes".into(),
                    shape: vec![1, 2],
                    data: vec![7.0, 8.0]
                }
            ]
        );
    }

    #[test]
    fn refuses_outputs_of_no_fixed_size() {
        for shape in [
            vec![],
            vec![1, -1, 85],
            vec![1, 0],
            vec![1, 1 << 20, 1 << 20],
        ] {
            let e = parser(&[("out", shape.clone())]).err().unwrap().to_string();
            assert!(e.contains("raw needs outputs [N, ...]"), "{shape:?}: {e}");
            assert!(e.contains("'out'"), "{e}");
        }
    }
}
