//! Running a model on preprocessed tensors, whatever its family: loading
//! ([`load`]), the host path ([`host`]), the GPU runner ([`gpu`]), then
//! NMS and the mapping back to frame pixels. Independent of any element,
//! so several elements (or a batcher) can drive it. Families are reached
//! only through [`crate::families`]' contract.

pub mod batcher;
pub(crate) mod checks;
mod error;
pub mod gpu;
mod host;
mod load;
pub mod node_placement;
pub mod runtime;

pub use error::{GpuError, InferError, LoadError};
pub use load::{ModelConfig, SessionStream, MAX_INPUT_VALUES, MAX_LABELS_BYTES};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::Session;

use crate::cuda::{DeviceTensor, Gpu};
use crate::meta::detections::{Classification, Detection, FrameDetections};
use crate::families::{nms, DecodeLimits, Family, FrameResult};
use crate::spec::{ElementType, InputSpec};
use crate::tensor::{Tensor, TensorStorage};
use gpu::GpuRunner;
use runtime::Provider;

/// What one frame keeps of the model's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Candidates whose confidence is above this...
    pub confidence: f32,
    /// ...at most this many, the most confident (before NMS, so that a low
    /// threshold cannot make NMS unbounded)...
    pub max_detections: usize,
    /// ...and class-wise NMS drops a box overlapping a better one of its
    /// class by more than this IoU.
    pub nms: f32,
}

/// Whether two tensors can share one model run: same shape, same memory,
/// same GPU.
pub fn same_memory(a: &Tensor, b: &Tensor) -> bool {
    let gpu = |t: &Tensor| match &t.storage {
        TensorStorage::Device(d) => Some(d.gpu().ordinal()),
        TensorStorage::Host(_) => None,
    };
    a.shape() == b.shape() && gpu(a) == gpu(b)
}

/// A loaded model of any family (detector, classifier or raw), ready to
/// run batches of tensors.
pub struct Model {
    session: Session,
    input_name: String,
    family: Box<dyn Family>,
    /// The family's preset with the model input's element type.
    input_spec: InputSpec,
    /// The element type of each output the family reads, in its order.
    output_elements: Vec<ElementType>,
    labels: Vec<String>,
    active_provider: Provider,
    library: PathBuf,
    model_name: String,
    /// The GPU the session runs on (cuda and tensorrt providers).
    gpu: Option<Arc<Gpu>>,
    /// Runs GPU tensors on GPU providers; made at load, before any frame
    /// (the error says why GPU tensors cannot be run).
    gpu_runner: Option<Result<GpuRunner, GpuError>>,
    /// The session's compute stream: it must outlive the session.
    _stream: Option<Arc<cudarc::driver::CudaStream>>,
    max_batch: usize,
}

impl Model {
    pub fn input_spec(&self) -> &InputSpec {
        &self.input_spec
    }

    pub fn active_provider(&self) -> Provider {
        self.active_provider
    }

    /// The ONNX Runtime library the session runs on.
    pub fn library(&self) -> &Path {
        &self.library
    }

    fn label(&self, class_id: u32) -> String {
        self.labels
            .get(class_id as usize)
            .filter(|l| !l.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("class-{class_id}"))
    }

    /// Most frames the model takes in one run: N for a fixed batch
    /// dimension N, else unbounded.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The batch size every run must have, for a fixed batch dimension.
    fn fixed_batch(&self) -> Option<usize> {
        (self.max_batch != usize::MAX).then_some(self.max_batch)
    }

    /// Fixes GPU inference at batches of `max_batch` (padded) and runs it
    /// once, so that no frame pays for the set-up. Nothing to do on the host
    /// path, where a run costs what its frames cost.
    /// Whether the session replays a captured CUDA graph.
    fn cuda_graph(&self) -> bool {
        matches!(&self.gpu_runner, Some(Ok(r)) if r.cuda_graph())
    }

    pub fn warm_up(&mut self, max_batch: usize) -> Result<(), GpuError> {
        let Some(Ok(runner)) = &mut self.gpu_runner else {
            return Ok(());
        };
        let spec = &self.input_spec;
        let item_shape = [1, 3, spec.height as usize, spec.width as usize];
        runner.warm_up(&mut self.session, item_shape, max_batch)
    }

    fn check_tensor(&self, tensor: &Tensor) -> Result<(), InferError> {
        let spec = &self.input_spec;
        if (tensor.width, tensor.height) != (spec.width as usize, spec.height as usize)
            || tensor.channels != 3
        {
            return Err(InferError::TensorSize {
                channels: tensor.channels,
                height: tensor.height,
                width: tensor.width,
                model_height: spec.height,
                model_width: spec.width,
            });
        }
        let needed = tensor.channels * tensor.height * tensor.width;
        let held = match &tensor.storage {
            TensorStorage::Host(values) => values.len(),
            TensorStorage::Device(d) => {
                if let Some(gpu) = self
                    .gpu
                    .as_ref()
                    .filter(|g| g.ordinal() != d.gpu().ordinal())
                {
                    return Err(InferError::TensorGpu {
                        tensor: d.gpu().ordinal(),
                        ours: gpu.ordinal(),
                    });
                }
                // Host tensors are float32 whatever the model takes (the
                // conversion happens at the session); GPU tensors are fed
                // to the model as they are.
                if d.element_type() != spec.element_type {
                    return Err(InferError::TensorElement {
                        tensor: d.element_type().name(),
                        model: spec.element_type.name(),
                    });
                }
                d.len()
            }
        };
        if held != needed {
            return Err(InferError::TensorLength {
                held,
                channels: tensor.channels,
                height: tensor.height,
                width: tensor.width,
                needed,
            });
        }
        Ok(())
    }

    /// Runs the model once on `tensors` (all in the same memory, at most
    /// [`Self::max_batch`]) and decodes each item's output with its own
    /// limits (threshold, then the most confident): on the GPU for GPU
    /// tensors, a GPU provider and a family with a device decoder, else on
    /// the host (GPU tensors are then copied to the host).
    fn decode_run(
        &mut self,
        tensors: &[&Tensor],
        limits: &[DecodeLimits],
    ) -> Result<Vec<FrameResult>, InferError> {
        let device_tensors: Option<Vec<&DeviceTensor>> = tensors
            .iter()
            .map(|t| match &t.storage {
                TensorStorage::Device(d) => Some(d),
                TensorStorage::Host(_) => None,
            })
            .collect();
        // Each tensor's GPU was checked against ours (check_tensor).
        if let (Some(devices), Some(_)) = (&device_tensors, &self.gpu) {
            if let Some(runner) = &mut self.gpu_runner {
                let runner = runner.as_mut().map_err(|e| e.clone())?;
                let all = runner.run(&mut self.session, devices, tensors[0].shape(), limits)?;
                return Ok(all.into_iter().map(FrameResult::Candidates).collect());
            }
        }
        if self.cuda_graph() {
            return Err(InferError::GraphNeedsDeviceTensor);
        }
        self.run_on_host(tensors, limits)
    }

    /// Runs the model on several frames' tensors (at most
    /// [`Self::max_batch`]), each decoded with its own [`Thresholds`]. One
    /// result per tensor, in order. A tensor that does not fit the model
    /// (size, GPU) fails alone; when the run of a batch fails, its frames
    /// are run one by one, so one camera's bad frame fails only that camera.
    pub fn run_batch(
        &mut self,
        tensors: &[&Tensor],
        thresholds: &[Thresholds],
    ) -> Vec<Result<FrameDetections, InferError>> {
        let mut results: Vec<Option<Result<FrameDetections, InferError>>> = tensors
            .iter()
            .map(|t| self.check_tensor(t).err().map(Err))
            .collect();
        let valid: Vec<usize> = (0..tensors.len())
            .filter(|&i| results[i].is_none())
            .collect();
        // The batcher only batches tensors of one memory and GPU, but a
        // caller may not: each run takes one kind.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in valid {
            match groups
                .iter_mut()
                .find(|g| same_memory(tensors[g[0]], tensors[i]))
            {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        for group in groups {
            let run = |this: &mut Self, items: &[usize]| {
                let views: Vec<&Tensor> = items.iter().map(|&i| tensors[i]).collect();
                let limits: Vec<DecodeLimits> = items
                    .iter()
                    .map(|&i| DecodeLimits {
                        confidence: thresholds[i].confidence,
                        max_detections: thresholds[i].max_detections,
                    })
                    .collect();
                this.decode_run(&views, &limits)
            };
            match run(self, &group) {
                Ok(all) => {
                    for (i, c) in group.iter().zip(all) {
                        results[*i] = Some(Ok(self.to_frame_detections(
                            c,
                            tensors[*i],
                            &thresholds[*i],
                        )));
                    }
                }
                Err(e) if group.len() == 1 => results[group[0]] = Some(Err(e)),
                Err(_) => {
                    for &i in &group {
                        results[i] = Some(run(self, &[i]).map(|mut c| {
                            self.to_frame_detections(c.remove(0), tensors[i], &thresholds[i])
                        }));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every tensor has a result"))
            .collect()
    }

    /// Candidates through NMS, then boxes mapped to frame pixels and
    /// clipped to the frame; classes labelled.
    fn to_frame_detections(
        &self,
        result: FrameResult,
        tensor: &Tensor,
        thresholds: &Thresholds,
    ) -> FrameDetections {
        let t = &tensor.transform;
        let mut frame = FrameDetections {
            model: self.model_name.clone(),
            frame_width: t.frame_width,
            frame_height: t.frame_height,
            ..Default::default()
        };
        let candidates = match result {
            FrameResult::Candidates(c) => c,
            FrameResult::Classes(classes) => {
                frame.classifications = classes
                    .into_iter()
                    .map(|c| Classification {
                        class_id: c.class_id,
                        label: self.label(c.class_id),
                        confidence: c.confidence,
                    })
                    .collect();
                return frame;
            }
            FrameResult::Tensors(tensors) => {
                frame.raw_outputs = tensors;
                return frame;
            }
        };
        let kept = nms::class_wise_nms(candidates, thresholds.nms);
        let (fw, fh) = (t.frame_width as f32, t.frame_height as f32);
        frame.detections = kept
            .into_iter()
            .filter_map(|c| {
                let (x1, y1) = t.to_frame(c.x1, c.y1);
                let (x2, y2) = t.to_frame(c.x2, c.y2);
                let (x1, y1) = (x1.clamp(0.0, fw), y1.clamp(0.0, fh));
                let (x2, y2) = (x2.clamp(0.0, fw), y2.clamp(0.0, fh));
                (x2 > x1 && y2 > y1).then(|| Detection {
                    class_id: c.class_id,
                    label: self.label(c.class_id),
                    confidence: c.confidence,
                    x: x1,
                    y: y1,
                    width: x2 - x1,
                    height: y2 - y1,
                    ..Default::default()
                })
            })
            .collect();
        frame
    }
}
