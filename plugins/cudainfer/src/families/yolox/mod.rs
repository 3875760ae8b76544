//! YOLOX (Megvii) output decoding.
//!
//! Output rows are anchor points of the stride-8, 16 and 32 grids, in that
//! order, row-major; each row is `[px, py, pw, ph, objectness, classes...]`,
//! already sigmoid-activated. `cx = (px + gx) * s`, `w = exp(pw) * s`,
//! score = objectness * class score, one candidate per class above threshold
//! (class-wise NMS follows). `decode.cu` does the same on the GPU.

use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig, PushKernelArg,
};

use super::{
    grid_input_size, Candidate, ModelShapes, Family, OutputUse, ShapeError,
    MAX_OUTPUT_VALUES, STRIDES,
};
use crate::cuda::device::KernelSource;
use crate::cuda::{CudaError, Gpu};
use super::gpu::{CandidateTargets, GpuDecoder, CANDIDATES_CUDA};
use crate::spec::{ChannelOrder, ElementType, InputSpec, ResizeMode};

const KERNEL: KernelSource = KernelSource {
    sources: &[CANDIDATES_CUDA, include_str!("decode.cu")],
    name: "yolox_decode",
};

/// One anchor point: grid cell and stride.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    gx: f32,
    gy: f32,
    stride: f32,
}

pub struct YoloxFamily {
    spec: InputSpec,
    anchors: Vec<Anchor>,
    num_classes: usize,
}

impl YoloxFamily {
    pub fn new(shapes: &ModelShapes) -> Result<Self, ShapeError> {
        let (width, height) = grid_input_size("yolox", &shapes.input)?;
        let anchors: Vec<Anchor> = STRIDES
            .iter()
            .flat_map(|&s| {
                let (gw, gh) = (width / s, height / s);
                (0..gh).flat_map(move |gy| {
                    (0..gw).map(move |gx| Anchor {
                        gx: gx as f32,
                        gy: gy as f32,
                        stride: s as f32,
                    })
                })
            })
            .collect();
        let output = shapes.first_output();
        if output.len() != 3 {
            return Err(ShapeError::YoloxDimensions {
                output: output.to_vec(),
            });
        }
        let rows = output.get(1).copied();
        let cols = output.get(2).copied();
        if rows != Some(anchors.len() as i64) || cols.is_none_or(|c| c <= 5) {
            return Err(ShapeError::YoloxOutput {
                height,
                width,
                anchors: anchors.len(),
                output: output.to_vec(),
            });
        }
        // A huge class count would overflow the output's size (and its
        // buffers): refuse it here, saying so.
        let values = (anchors.len() as u64).checked_mul(cols.unwrap_or(0) as u64);
        if values.is_none_or(|v| v > MAX_OUTPUT_VALUES) {
            return Err(ShapeError::TooManyClasses {
                output: output.to_vec(),
                max_classes: MAX_OUTPUT_VALUES / anchors.len() as u64 - 5,
                height,
                width,
            });
        }
        Ok(Self {
            spec: InputSpec {
                width,
                height,
                channel_order: ChannelOrder::Bgr,
                resize_mode: ResizeMode::Letterbox,
                pixel_scale: 1.0,
                mean: [0.0; 3],
                std: [1.0; 3],
                pad_value: 114.0,
                element_type: ElementType::Float32,
            },
            num_classes: cols.unwrap_or(0) as usize - 5,
            anchors,
        })
    }
}

impl Family for YoloxFamily {
    fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn outputs(&self) -> Vec<OutputUse> {
        vec![OutputUse {
            index: 0,
            dims: vec![self.anchors.len(), 5 + self.num_classes],
        }]
    }

    fn gpu_decoder(&self, gpu: &Gpu) -> Option<Result<Box<dyn GpuDecoder>, CudaError>> {
        let flat: Vec<f32> = self
            .anchors
            .iter()
            .flat_map(|a| [a.gx, a.gy, a.stride])
            .collect();
        Some(
            gpu.stream()
                .clone_htod(&flat)
                .map_err(CudaError::decode_alloc())
                .map(|anchors| {
                    Box::new(YoloxGpuDecoder {
                        anchors,
                        rows: self.anchors.len(),
                        num_classes: self.num_classes,
                    }) as Box<dyn GpuDecoder>
                }),
        )
    }

    fn decode(&self, outputs: &[&[f32]], threshold: f32) -> Vec<Candidate> {
        let output = outputs[0];
        let row_len = 5 + self.num_classes;
        let mut out = Vec::new();
        for (row, anchor) in output.chunks_exact(row_len).zip(&self.anchors) {
            let objectness = row[4];
            // Class scores are at most 1, so a low objectness rules out the row.
            if objectness <= threshold {
                continue;
            }
            let cx = (row[0] + anchor.gx) * anchor.stride;
            let cy = (row[1] + anchor.gy) * anchor.stride;
            let w = row[2].exp() * anchor.stride;
            let h = row[3].exp() * anchor.stride;
            for (class_id, &class_score) in row[5..].iter().enumerate() {
                let confidence = objectness * class_score;
                if confidence > threshold {
                    out.push(Candidate {
                        class_id: class_id as u32,
                        confidence,
                        x1: cx - w / 2.0,
                        y1: cy - h / 2.0,
                        x2: cx + w / 2.0,
                        y2: cy + h / 2.0,
                    });
                }
            }
        }
        out
    }
}

/// `decode.cu`, with the anchors on the GPU.
struct YoloxGpuDecoder {
    /// Per output row: grid x, grid y and stride.
    anchors: CudaSlice<f32>,
    rows: usize,
    num_classes: usize,
}

impl GpuDecoder for YoloxGpuDecoder {
    fn kernel(&self) -> KernelSource {
        KERNEL
    }

    fn positions(&self) -> usize {
        self.rows
    }

    fn max_candidates(&self) -> usize {
        self.rows * self.num_classes
    }

    unsafe fn launch(
        &self,
        stream: &CudaStream,
        kernel: &CudaFunction,
        config: LaunchConfig,
        outputs: &[u64],
        targets: CandidateTargets,
    ) -> Result<(), DriverError> {
        let (rows, classes) = (self.rows as i32, self.num_classes as i32);
        let anchors = self.anchors.device_ptr(stream).0;
        // SAFETY: the caller's output and targets; the anchors hold rows x 3
        // floats on the same GPU.
        unsafe {
            stream
                .launch_builder(kernel)
                .arg(&outputs[0])
                .arg(&anchors)
                .arg(&rows)
                .arg(&classes)
                .arg(&targets)
                .launch(config)
        }
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(input: [i64; 4], output: [i64; 3]) -> ModelShapes {
        super::super::test_shapes(&input, "output", &output)
    }

    #[test]
    fn decodes_a_row_on_the_stride_16_grid() {
        let p = YoloxFamily::new(&shapes([1, 3, 64, 64], [1, 84, 7])).unwrap();
        // 64x64: 8x8 anchors at stride 8, 4x4 at 16, 2x2 at 32.
        let mut out = vec![0f32; 84 * 7];
        let row = 64 + 4 + 1; // stride 16, gy = 1, gx = 1
        out[row * 7..row * 7 + 7].copy_from_slice(&[0.5, 0.25, 0.0, (2f32).ln(), 0.9, 0.1, 0.8]);
        let c = p.decode(&[&out], 0.3);
        assert_eq!(c.len(), 1);
        let c = c[0];
        assert_eq!(c.class_id, 1);
        assert!((c.confidence - 0.72).abs() < 1e-6);
        // cx = 1.5 * 16 = 24, cy = 1.25 * 16 = 20, w = 16, h = 32
        assert_eq!((c.x1, c.y1, c.x2, c.y2), (16.0, 4.0, 32.0, 36.0));
    }

    #[test]
    fn rejects_models_that_do_not_fit() {
        let e = YoloxFamily::new(&shapes([1, 1, 64, 64], [1, 84, 7]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("[N, 3, H, W]"), "{e}");
        let e = YoloxFamily::new(&shapes([1, 3, 64, 64], [1, 80, 7]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("output [N, 84, 5 + classes]"), "{e}");
        let e = YoloxFamily::new(&shapes([1, 3, -1, -1], [1, 84, 7]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("fixed input height and width"), "{e}");
    }

    /// Found by the `yolox_decode` fuzzer: a fixed input 2936012864 high
    /// (a multiple of 32 that fits u32) made ~10^10 anchors before the
    /// output was looked at. trtinfer's model check refuses it first; the
    /// parser now does too.
    #[test]
    fn refuses_huge_inputs_before_making_anchors() {
        let e = YoloxFamily::new(&shapes([1, 3, 2936012864, 64], [23643898043695105, 0, 7]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("at most 8192 on a side"), "{e}");
        assert!(YoloxFamily::new(&shapes([1, 3, 8192, 8192], [1, 1376256, 6])).is_ok());
    }

    /// Found by the `model_shapes` fuzzer: a 416x416 model whose output
    /// claims 0x0300000000000055 columns passed every check, and
    /// `output_len` (3549 rows x that) overflowed: a panic with overflow
    /// checks, else a wrapped size for the output buffers and slices.
    #[test]
    fn refuses_outputs_whose_size_overflows() {
        let e = YoloxFamily::new(&shapes([1, 3, 416, 416], [1, 3549, 0x0300000000000055]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("more than 67108864 values per frame: at most 18904 classes"),
            "{e}"
        );
        let e = YoloxFamily::new(&shapes([1, 3, 416, 416], [1, 3549, i64::MAX]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("more than 67108864 values"), "{e}");
        let p = YoloxFamily::new(&shapes([1, 3, 416, 416], [1, 3549, 18909])).unwrap();
        assert_eq!(p.outputs()[0].values(), 3549 * 18909);
        assert!(YoloxFamily::new(&shapes([1, 3, 416, 416], [1, 3549, 18910])).is_err());
    }
}
