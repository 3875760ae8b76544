//! Ultralytics output decoding: YOLOv8, YOLO11 and YOLOv12 share it.
//!
//! Input: RGB, values / 255, letterbox centred, padding 114. Output
//! `[N, 4 + classes, anchors]`, channel-major: channel `c` of anchor `a` is
//! at `c * anchors + a`. Channels 0-3 are cx, cy, w, h in input pixels, the
//! rest one score per class, already sigmoid-activated; no objectness.
//! Anchors are the cells of the stride-8, 16 and 32 grids, so their number
//! follows from the input size. One candidate per (anchor, class) whose
//! score is above the threshold, as for YOLOX, and class-wise NMS follows
//! (Ultralytics' own `predict` keeps only each anchor's best class; the two
//! differ only where one box scores above the threshold for two classes).
//! `decode.cu` does the same on the GPU.

use cudarc::driver::{CudaFunction, CudaStream, DriverError, LaunchConfig, PushKernelArg};

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
    name: "yolov8_decode",
};

pub struct Yolov8Family {
    spec: InputSpec,
    anchors: usize,
    num_classes: usize,
}

impl Yolov8Family {
    pub fn new(shapes: &ModelShapes) -> Result<Self, ShapeError> {
        let (width, height) = grid_input_size("yolov8", &shapes.input)?;
        let anchors: usize = STRIDES
            .iter()
            .map(|&s| ((width / s) * (height / s)) as usize)
            .sum();
        let output = shapes.first_output();
        let channels = output.get(1).copied().filter(|&c| c > 4);
        if output.len() != 3 || channels.is_none() || output[2] != anchors as i64 {
            return Err(ShapeError::Yolov8Output {
                height,
                width,
                anchors,
                output: output.to_vec(),
            });
        }
        // A huge class count would overflow the output's size (and its
        // buffers): refuse it here, saying so (found by the yolov8_decode
        // fuzzer).
        let values = (anchors as u64).checked_mul(channels.unwrap_or(0) as u64);
        if values.is_none_or(|v| v > MAX_OUTPUT_VALUES) {
            return Err(ShapeError::TooManyClasses {
                output: output.to_vec(),
                max_classes: MAX_OUTPUT_VALUES / anchors.max(1) as u64 - 4,
                height,
                width,
            });
        }
        Ok(Self {
            spec: InputSpec {
                width,
                height,
                channel_order: ChannelOrder::Rgb,
                resize_mode: ResizeMode::LetterboxCentred,
                pixel_scale: 1.0 / 255.0,
                mean: [0.0; 3],
                std: [1.0; 3],
                pad_value: 114.0,
                element_type: ElementType::Float32,
            },
            anchors,
            num_classes: channels.unwrap_or(0) as usize - 4,
        })
    }
}

impl Family for Yolov8Family {
    fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn outputs(&self) -> Vec<OutputUse> {
        vec![OutputUse {
            index: 0,
            dims: vec![4 + self.num_classes, self.anchors],
        }]
    }

    fn gpu_decoder(&self, _gpu: &Gpu) -> Option<Result<Box<dyn GpuDecoder>, CudaError>> {
        Some(Ok(Box::new(Yolov8GpuDecoder {
            anchors: self.anchors,
            num_classes: self.num_classes,
        })))
    }

    fn decode(&self, outputs: &[&[f32]], threshold: f32) -> Vec<Candidate> {
        let output = outputs[0];
        let n = self.anchors;
        // Each class's scores are contiguous: scan them in memory order,
        // then put the few survivors in (anchor, class) order, the order
        // every decoder gives.
        let mut found: Vec<(usize, usize)> = Vec::new();
        for class in 0..self.num_classes {
            let scores = &output[(4 + class) * n..(5 + class) * n];
            found.extend(
                scores
                    .iter()
                    .enumerate()
                    .filter(|(_, &s)| s > threshold)
                    .map(|(anchor, _)| (anchor, class)),
            );
        }
        found.sort_unstable();
        found
            .into_iter()
            .map(|(a, class)| {
                let (cx, cy, w, h) = (
                    output[a],
                    output[n + a],
                    output[2 * n + a],
                    output[3 * n + a],
                );
                Candidate {
                    class_id: class as u32,
                    confidence: output[(4 + class) * n + a],
                    x1: cx - w / 2.0,
                    y1: cy - h / 2.0,
                    x2: cx + w / 2.0,
                    y2: cy + h / 2.0,
                }
            })
            .collect()
    }
}

/// `decode.cu`: the output alone says everything.
struct Yolov8GpuDecoder {
    anchors: usize,
    num_classes: usize,
}

impl GpuDecoder for Yolov8GpuDecoder {
    fn kernel(&self) -> KernelSource {
        KERNEL
    }

    fn positions(&self) -> usize {
        self.anchors
    }

    fn max_candidates(&self) -> usize {
        self.anchors * self.num_classes
    }

    unsafe fn launch(
        &self,
        stream: &CudaStream,
        kernel: &CudaFunction,
        config: LaunchConfig,
        outputs: &[u64],
        targets: CandidateTargets,
    ) -> Result<(), DriverError> {
        let (anchors, classes) = (self.anchors as i32, self.num_classes as i32);
        // SAFETY: the caller's output and targets.
        unsafe {
            stream
                .launch_builder(kernel)
                .arg(&outputs[0])
                .arg(&anchors)
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
        super::super::test_shapes(&input, "output0", &output)
    }

    #[test]
    fn anchors_follow_the_input_size() {
        let p = Yolov8Family::new(&shapes([1, 3, 640, 640], [1, 84, 8400])).unwrap();
        assert_eq!((p.anchors, p.num_classes), (8400, 80));
        let p = Yolov8Family::new(&shapes([1, 3, 320, 320], [1, 84, 2100])).unwrap();
        assert_eq!(p.anchors, 2100);
        // 64 wide, 32 high: 8x4 + 4x2 + 2x1 anchors.
        let p = Yolov8Family::new(&shapes([1, 3, 32, 64], [1, 6, 42])).unwrap();
        assert_eq!((p.anchors, p.num_classes), (42, 2));
        assert_eq!(p.input_spec().resize_mode, ResizeMode::LetterboxCentred);
        assert_eq!(p.input_spec().channel_order, ChannelOrder::Rgb);
    }

    #[test]
    fn decodes_channel_major_output_in_anchor_then_class_order() {
        // 64x64: 84 anchors, 3 classes: 7 channels of 84 values.
        let p = Yolov8Family::new(&shapes([1, 3, 64, 64], [1, 7, 84])).unwrap();
        let n = 84;
        let mut out = vec![0f32; 7 * n];
        let mut put = |anchor: usize, values: [f32; 7]| {
            for (c, v) in values.into_iter().enumerate() {
                out[c * n + anchor] = v;
            }
        };
        put(70, [30.0, 20.0, 10.0, 8.0, 0.9, 0.1, 0.6]);
        put(5, [4.0, 6.0, 2.0, 4.0, 0.2, 0.5, 0.3]);
        let c = p.decode(&[&out], 0.4);
        let got: Vec<(u32, f32, [f32; 4])> = c
            .iter()
            .map(|c| (c.class_id, c.confidence, [c.x1, c.y1, c.x2, c.y2]))
            .collect();
        assert_eq!(
            got,
            [
                (1, 0.5, [3.0, 4.0, 5.0, 8.0]),
                (0, 0.9, [25.0, 16.0, 35.0, 24.0]),
                (2, 0.6, [25.0, 16.0, 35.0, 24.0]),
            ]
        );
    }

    #[test]
    fn rejects_models_that_do_not_fit() {
        let e = Yolov8Family::new(&shapes([1, 3, 640, 640], [1, 8400, 85]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("output [N, 4 + classes, 8400]"), "{e}");
        let e = Yolov8Family::new(&shapes([1, 3, 640, 640], [1, 4, 8400]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("output [N, 4 + classes, 8400]"), "{e}");
        let e = Yolov8Family::new(&shapes([1, 3, 600, 640], [1, 84, 8400]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("multiples of 32"), "{e}");
        // The yolov8_decode fuzzer's find: a class count whose output size
        // overflows.
        let e = Yolov8Family::new(&shapes([1, 3, 96, 32], [1, 0x2222_2222_2222_2241, 63]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("more than 67108864 values per frame"), "{e}");
        assert!(e.contains("at most 1065216 classes"), "{e}");
    }
}
