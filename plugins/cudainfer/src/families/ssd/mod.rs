//! SSD-style detectors (UltraFace and the like): two outputs, `scores`
//! `[N, priors, classes]` (softmaxed, class 0 the background) and `boxes`
//! `[N, priors, 4]`, found by name or, without those names, by shape (the
//! boxes' last dimension is 4).
//!
//! The boxes are either decoded by the model (x1, y1, x2, y2 in 0..1 of
//! the input, `ssd-boxes=decoded`, the default) or raw regressions (dcx,
//! dcy, dw, dh, `ssd-boxes=raw`) decoded against priors described by
//! `ssd-priors` ([`Priors`]): centre = d·centre-variance·prior size +
//! prior centre, size = exp(d·size-variance)·prior size. Nothing in a
//! model tells the two apart (both are [N, priors, 4] floats), so the user
//! says which.
//!
//! Input: RGB, stretched, (x − 127) / 128. One candidate per (prior,
//! class ≥ 1) above the threshold, with the model's class ids (the
//! background never is one), the box in tensor pixels; class-wise NMS
//! follows. `decode.cu` does the same on the GPU.

mod priors;

pub use priors::{Priors, PriorsError};

use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig, PushKernelArg,
};

use super::{
    image_input_size, Candidate, ModelOutput, ModelShapes, Family, OutputUse, Outputs,
    ShapeError, MAX_OUTPUT_VALUES,
};
use crate::cuda::device::KernelSource;
use crate::cuda::{CudaError, Gpu};
use super::gpu::{CandidateTargets, GpuDecoder, CANDIDATES_CUDA};
use crate::spec::InputSpec;

const KERNEL: KernelSource = KernelSource {
    sources: &[CANDIDATES_CUDA, include_str!("decode.cu")],
    name: "ssd_decode",
};

/// What the model's box output holds.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCudaInferSsdBoxes")]
pub enum SsdBoxes {
    #[default]
    #[enum_value(
        name = "Decoded by the model: x1, y1, x2, y2 in 0..1 of the input",
        nick = "decoded"
    )]
    Decoded = 0,
    #[enum_value(
        name = "Raw regressions dcx, dcy, dw, dh, decoded against ssd-priors",
        nick = "raw"
    )]
    Raw = 1,
}

/// The `model-type=ssd` settings (trtinfer's `ssd-boxes`, `ssd-priors`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SsdOptions {
    pub boxes: SsdBoxes,
    /// [`Priors::parse`]'s text; empty: UltraFace's layout.
    pub priors: String,
}


/// Raw regressions' decoding: the priors and the variances.
struct RawBoxes {
    priors: Vec<[f32; 4]>,
    center_variance: f32,
    size_variance: f32,
}

pub struct SsdFamily {
    spec: InputSpec,
    priors: usize,
    /// With the background.
    num_classes: usize,
    scores_index: usize,
    boxes_index: usize,
    /// None: the model decodes its boxes.
    raw: Option<RawBoxes>,
}

/// The indices of the scores and boxes outputs: by their names, else the
/// two rank-3 outputs told apart by the boxes' last dimension, 4.
fn find_outputs(outputs: &[ModelOutput]) -> Option<(usize, usize)> {
    let named = |n: &str| outputs.iter().position(|o| o.name == n);
    if let (Some(scores), Some(boxes)) = (named("scores"), named("boxes")) {
        return Some((scores, boxes));
    }
    let rank3: Vec<usize> = (0..outputs.len())
        .filter(|&i| outputs[i].shape.len() == 3)
        .collect();
    let [a, b] = rank3[..] else {
        return None;
    };
    let fours = |i: usize| outputs[i].shape[2] == 4;
    match (fours(a), fours(b)) {
        (false, true) => Some((a, b)),
        (true, false) => Some((b, a)),
        _ => None,
    }
}

impl SsdFamily {
    pub fn new(shapes: &ModelShapes, options: &SsdOptions) -> Result<Self, ShapeError> {
        let (width, height) = image_input_size("ssd", &shapes.input)?;
        let described = || Outputs(shapes.outputs.clone());
        let Some((scores_index, boxes_index)) = find_outputs(&shapes.outputs) else {
            return Err(ShapeError::SsdOutputsNotFound {
                outputs: described(),
            });
        };
        let (scores, boxes) = (
            &shapes.outputs[scores_index].shape,
            &shapes.outputs[boxes_index].shape,
        );
        let fits = scores.len() == 3
            && boxes.len() == 3
            && boxes[2] == 4
            && scores[1] > 0
            && scores[1] == boxes[1]
            && scores[2] >= 2;
        if !fits {
            return Err(ShapeError::SsdOutputShapes {
                outputs: described(),
            });
        }
        let (priors, num_classes) = (scores[1] as u64, scores[2] as u64);
        if priors
            .checked_mul(num_classes.max(4))
            .is_none_or(|v| v > MAX_OUTPUT_VALUES)
        {
            return Err(ShapeError::SsdTooManyScores {
                scores: scores.clone(),
            });
        }
        let raw = match options.boxes {
            SsdBoxes::Decoded => None,
            SsdBoxes::Raw => {
                let layout =
                    Priors::parse(&options.priors).map_err(|source| ShapeError::SsdPriors {
                        priors: options.priors.clone(),
                        source,
                    })?;
                let count = layout.count(width, height);
                if count != priors {
                    return Err(ShapeError::SsdPriorCount {
                        priors: options.priors.clone(),
                        count,
                        height,
                        width,
                        model: priors,
                    });
                }
                Some(RawBoxes {
                    priors: layout.boxes(width, height),
                    center_variance: layout.center_variance,
                    size_variance: layout.size_variance,
                })
            }
        };
        Ok(Self {
            spec: InputSpec::stretched_rgb(width, height, 127.0, 128.0),
            priors: priors as usize,
            num_classes: num_classes as usize,
            scores_index,
            boxes_index,
            raw,
        })
    }

    /// Prior `p`'s box from its 4 box values, x1, y1, x2, y2 in 0..1 (the
    /// arithmetic of decode.cu).
    fn corners(&self, b: &[f32], p: usize) -> [f32; 4] {
        let Some(raw) = &self.raw else {
            return [b[0], b[1], b[2], b[3]];
        };
        let q = raw.priors[p];
        let cx = b[0] * raw.center_variance * q[2] + q[0];
        let cy = b[1] * raw.center_variance * q[3] + q[1];
        let w = (b[2] * raw.size_variance).exp() * q[2];
        let h = (b[3] * raw.size_variance).exp() * q[3];
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }
}

impl Family for SsdFamily {
    fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    /// With the background, so class ids (and labels file lines) are the
    /// model's: line 0 names the background.
    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn outputs(&self) -> Vec<OutputUse> {
        vec![
            OutputUse {
                index: self.scores_index,
                dims: vec![self.priors, self.num_classes],
            },
            OutputUse {
                index: self.boxes_index,
                dims: vec![self.priors, 4],
            },
        ]
    }

    fn gpu_decoder(&self, gpu: &Gpu) -> Option<Result<Box<dyn GpuDecoder>, CudaError>> {
        let priors = match &self.raw {
            None => Ok(None),
            Some(raw) => gpu
                .stream()
                .clone_htod(raw.priors.as_flattened())
                .map(Some)
                .map_err(CudaError::decode_alloc()),
        };
        Some(priors.map(|priors| {
            let (center_variance, size_variance) = self
                .raw
                .as_ref()
                .map_or((0.0, 0.0), |r| (r.center_variance, r.size_variance));
            Box::new(SsdGpuDecoder {
                priors,
                count: self.priors,
                num_classes: self.num_classes,
                center_variance,
                size_variance,
                width: self.spec.width as f32,
                height: self.spec.height as f32,
            }) as Box<dyn GpuDecoder>
        }))
    }

    fn decode(&self, outputs: &[&[f32]], threshold: f32) -> Vec<Candidate> {
        let (scores, boxes) = (outputs[0], outputs[1]);
        let (width, height) = (self.spec.width as f32, self.spec.height as f32);
        let mut out = Vec::new();
        for (p, row) in scores.chunks_exact(self.num_classes).enumerate() {
            // Only priors with a survivor pay for decoding their box.
            let mut corners = None;
            for (class, &score) in row.iter().enumerate().skip(1) {
                if score > threshold {
                    let [x1, y1, x2, y2] =
                        *corners.get_or_insert_with(|| self.corners(&boxes[4 * p..4 * p + 4], p));
                    out.push(Candidate {
                        class_id: class as u32,
                        confidence: score,
                        x1: x1 * width,
                        y1: y1 * height,
                        x2: x2 * width,
                        y2: y2 * height,
                    });
                }
            }
        }
        out
    }
}

/// `decode.cu`, with the priors on the GPU for raw regressions.
struct SsdGpuDecoder {
    /// [priors, 4] cx, cy, w, h; None: the model decodes its boxes.
    priors: Option<CudaSlice<f32>>,
    count: usize,
    num_classes: usize,
    center_variance: f32,
    size_variance: f32,
    width: f32,
    height: f32,
}

impl GpuDecoder for SsdGpuDecoder {
    fn kernel(&self) -> KernelSource {
        KERNEL
    }

    fn positions(&self) -> usize {
        self.count
    }

    fn max_candidates(&self) -> usize {
        self.count * (self.num_classes - 1)
    }

    unsafe fn launch(
        &self,
        stream: &CudaStream,
        kernel: &CudaFunction,
        config: LaunchConfig,
        outputs: &[u64],
        targets: CandidateTargets,
    ) -> Result<(), DriverError> {
        let (count, classes) = (self.count as i32, self.num_classes as i32);
        // The kernel's "boxes are decoded".
        let priors = self
            .priors
            .as_ref()
            .map_or(0u64, |p| p.device_ptr(stream).0);
        // SAFETY: the caller's outputs (scores, then boxes) and targets; the
        // priors, when present, hold count x 4 floats on the same GPU.
        unsafe {
            stream
                .launch_builder(kernel)
                .arg(&outputs[0])
                .arg(&outputs[1])
                .arg(&priors)
                .arg(&count)
                .arg(&classes)
                .arg(&self.center_variance)
                .arg(&self.size_variance)
                .arg(&self.width)
                .arg(&self.height)
                .arg(&targets)
                .launch(config)
        }
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ResizeMode;

    fn output(name: &str, shape: &[i64]) -> ModelOutput {
        ModelOutput {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    fn ultraface(outputs: Vec<ModelOutput>) -> ModelShapes {
        ModelShapes {
            input: vec![1, 3, 240, 320],
            outputs,
        }
    }

    fn raw() -> SsdOptions {
        SsdOptions {
            boxes: SsdBoxes::Raw,
            priors: String::new(),
        }
    }

    #[test]
    fn finds_outputs_by_name_then_by_shape() {
        let named = ultraface(vec![
            output("boxes", &[1, 4420, 4]),
            output("scores", &[1, 4420, 2]),
        ]);
        let p = SsdFamily::new(&named, &SsdOptions::default()).unwrap();
        assert_eq!((p.scores_index, p.boxes_index), (1, 0));
        assert_eq!(p.num_classes(), 2);
        let unnamed = ultraface(vec![output("a", &[1, 4420, 2]), output("b", &[1, 4420, 4])]);
        let p = SsdFamily::new(&unnamed, &SsdOptions::default()).unwrap();
        assert_eq!((p.scores_index, p.boxes_index), (0, 1));
        assert_eq!(p.input_spec().resize_mode, ResizeMode::Stretch);
        assert_eq!(p.input_spec().mean, [127.0; 3]);
        assert_eq!(p.input_spec().std, [128.0; 3]);
    }

    #[test]
    fn refuses_models_that_do_not_fit() {
        let e = SsdFamily::new(&ultraface(vec![output("output", &[1, 3549, 85])]), &raw())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("ssd needs two outputs") && e.contains("output [1, 3549, 85]"),
            "{e}"
        );
        let e = SsdFamily::new(
            &ultraface(vec![
                output("scores", &[1, 4420, 2]),
                output("boxes", &[1, 4000, 4]),
            ]),
            &raw(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("the same fixed number of priors"), "{e}");
        // The default priors are UltraFace's: 4420 at 320x240.
        let e = SsdFamily::new(
            &ultraface(vec![
                output("scores", &[1, 3000, 2]),
                output("boxes", &[1, 3000, 4]),
            ]),
            &raw(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("describe 4420 priors for a 240x320 input, but the model has 3000"),
            "{e}"
        );
        let bad = SsdOptions {
            boxes: SsdBoxes::Raw,
            priors: "strides=8".into(),
        };
        let e = SsdFamily::new(
            &ultraface(vec![
                output("scores", &[1, 4420, 2]),
                output("boxes", &[1, 4420, 4]),
            ]),
            &bad,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with("ssd-priors 'strides=8': 1 strides but 4"),
            "{e}"
        );
    }

    #[test]
    fn decodes_both_box_variants_in_prior_then_class_order() {
        // 64x32 input, one layer of stride 32: 2x1 cells, one size 16.
        let shapes = ModelShapes {
            input: vec![1, 3, 32, 64],
            outputs: vec![output("scores", &[1, 2, 3]), output("boxes", &[1, 2, 4])],
        };
        let scores = [0.1, 0.8, 0.9, 0.2, 0.05, 0.75];
        let boxes = [0.25, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0];
        let decoded = SsdFamily::new(&shapes, &SsdOptions::default()).unwrap();
        let got: Vec<(u32, f32, [f32; 4])> = decoded
            .decode(&[&scores, &boxes], 0.5)
            .iter()
            .map(|c| (c.class_id, c.confidence, [c.x1, c.y1, c.x2, c.y2]))
            .collect();
        // Background scores are never candidates (0.2 at prior 1 is below anyway).
        assert_eq!(
            got,
            [
                (1, 0.8, [16.0, 16.0, 32.0, 32.0]),
                (2, 0.9, [16.0, 16.0, 32.0, 32.0]),
                (2, 0.75, [0.0, 0.0, 0.0, 0.0]),
            ]
        );
        let options = SsdOptions {
            boxes: SsdBoxes::Raw,
            priors: "strides=32;min-sizes=16;variances=0.5,0.5".into(),
        };
        let raw = SsdFamily::new(&shapes, &options).unwrap();
        // Prior 1: centre (0.75, 0.5), 0.25 x 0.5. Regression (2, -1, 2ln2, 0):
        // centre (0.75 + 2·0.5·0.25, 0.5 − 0.5·0.5) = (1.0, 0.25), size (0.5, 0.5).
        let boxes = [0.0, 0.0, 0.0, 0.0, 2.0, -1.0, 2.0 * 2f32.ln(), 0.0];
        let c = raw.decode(&[&scores, &boxes], 0.7);
        assert_eq!(c.len(), 3);
        let b = [c[2].x1, c[2].y1, c[2].x2, c[2].y2];
        let want = [0.75 * 64.0, 0.0, 1.25 * 64.0, 0.5 * 32.0];
        assert!(
            b.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-4),
            "{b:?}"
        );
        // Prior 0 decodes to the prior itself: centre (0.25, 0.5), 0.25 x 0.5.
        assert_eq!([c[0].x1, c[0].y1, c[0].x2, c[0].y2], [8.0, 8.0, 24.0, 24.0]);
    }
}
