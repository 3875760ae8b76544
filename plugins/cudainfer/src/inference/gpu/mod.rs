//! Inference on tensors in GPU memory: the input is bound to ONNX Runtime
//! as device memory (no copy), the output stays on the GPU, where a kernel
//! decodes it and drops what is under the confidence threshold; only the
//! surviving candidates are copied to the host.
//!
//! A model family brings its decoding kernel ([`GpuDecoder`]), which only
//! writes candidate records through `families/candidates.cu`; the buffers, the
//! counts, the max-detections second pass, the copy and the order are the
//! same for every family and live here.
//!
//! fp16 models take fp16 tensors (`cudapreprocess` makes them for such a
//! model) and their fp16 outputs are converted to float32 on the GPU
//! (`convert.cu`) before the family's kernel, which never sees fp16.

mod binding;

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};

use super::error::GpuError;
use crate::cuda::device::KernelSource;
use crate::cuda::{CudaError, DeviceTensor, Gpu};
use crate::families::gpu::{CandidateTargets, GpuDecoder, BINS, RECORD};
use crate::families::{keep_most_confident, Candidate, DecodeLimits, OutputUse};
use crate::spec::ElementType;

/// The fp16-to-float32 conversion of model outputs.
const CONVERT_KERNEL: KernelSource = KernelSource {
    sources: &[include_str!("convert.cu")],
    name: "half_to_float",
};

pub struct GpuRunner {
    gpu: Arc<Gpu>,
    stream: Arc<CudaStream>,
    decoder: Box<dyn GpuDecoder>,
    decode_kernel: CudaFunction,
    input_name_c: std::ffi::CString,
    /// What the model's input takes (and so the tensors hold).
    input_element: ElementType,
    memory_info: MemoryInfo<'static>,
    binding: IoBinding,
    /// The outputs the decoder reads, by name, and one image's shape of each.
    outputs: Vec<(String, Vec<usize>)>,
    /// For each of `outputs` that is fp16, its float32 copy for the decoder.
    converted: Vec<Option<CudaSlice<f32>>>,
    /// Compiled where some output is fp16.
    convert_kernel: Option<CudaFunction>,
    /// The batch size the output binding was last used with.
    bound_batch: usize,
    /// Frames per run (padded up to this); 1 until `warm_up`.
    frames_per_run: usize,
    candidates: CudaSlice<f32>,
    /// Survivors of the batch, then of each image.
    counts: CudaSlice<u32>,
    /// Each image's confidence threshold for the kernel.
    thresholds: CudaSlice<f32>,
    /// Each image's survivors by confidence bin.
    histograms: CudaSlice<u32>,
    /// Where several tensors are gathered into one batch (bytes).
    batch: Option<CudaSlice<u8>>,
    /// The session replays a captured CUDA graph: every run reads the
    /// gathering buffer and writes `graph_outputs`, at fixed addresses.
    cuda_graph: bool,
    /// With `cuda_graph`, the outputs' buffers (bytes), bound once.
    graph_outputs: Vec<CudaSlice<u8>>,
}

impl GpuRunner {
    /// `stream`: where the session runs (its compute stream) and where we
    /// gather and decode; the GPU's shared stream, or one of the session's
    /// own in a pool of sessions.
    pub fn new(
        (gpu, stream): (Arc<Gpu>, Arc<CudaStream>),
        session: &Session,
        (input_name, input_element): (&str, ElementType),
        outputs: &[OutputUse],
        output_elements: &[ElementType],
        decoder: Box<dyn GpuDecoder>,
        cuda_graph: bool,
    ) -> Result<Self, GpuError> {
        let decode_kernel = gpu.kernel(decoder.kernel())?;
        let any_half = output_elements.contains(&ElementType::Float16);
        let convert_kernel = any_half.then(|| gpu.kernel(CONVERT_KERNEL)).transpose()?;
        let memory_info = MemoryInfo::new(
            AllocationDevice::CUDA,
            gpu.ordinal() as i32,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(GpuError::ort(
            "cannot describe CUDA memory to ONNX Runtime",
        ))?;
        let mut binding = session.create_binding().map_err(GpuError::ort(
            "cannot create an ONNX Runtime I/O binding",
        ))?;
        let outputs: Vec<(String, Vec<usize>)> = outputs
            .iter()
            .map(|o| {
                (
                    session.outputs()[o.index].name().to_string(),
                    o.dims.clone(),
                )
            })
            .collect();
        // ONNX Runtime allocates each output on the GPU once and reuses it;
        // outputs not bound are not computed.
        for (name, _) in &outputs {
            binding
                .bind_output_to_device(name, &memory_info)
                .map_err(|e| GpuError::KeepOutput {
                    name: name.clone(),
                    source: Arc::new(e),
                })?;
        }
        let alloc_error = CudaError::decode_alloc();
        // Room for every (position, class) pair: nothing is ever dropped.
        let candidates = stream
            .alloc_zeros::<f32>(decoder.max_candidates() * RECORD)
            .map_err(alloc_error)?;
        // Grown to the batch on first use.
        let counts = stream.alloc_zeros::<u32>(2).map_err(alloc_error)?;
        let thresholds = stream.alloc_zeros::<f32>(1).map_err(alloc_error)?;
        let histograms = stream.alloc_zeros::<u32>(BINS).map_err(alloc_error)?;
        // Sized at the first run, when the batch is known.
        let converted = output_elements
            .iter()
            .map(|e| match e {
                ElementType::Float16 => stream.alloc_zeros::<f32>(1).map(Some),
                ElementType::Float32 => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(alloc_error)?;
        Ok(Self {
            gpu,
            stream,
            decoder,
            decode_kernel,
            input_name_c: std::ffi::CString::new(input_name)
                .map_err(|_| GpuError::InputNameNul)?,
            input_element,
            memory_info,
            binding,
            outputs,
            converted,
            convert_kernel,
            bound_batch: 1,
            frames_per_run: 1,
            candidates,
            counts,
            thresholds,
            histograms,
            batch: None,
            cuda_graph,
            graph_outputs: Vec::new(),
        })
    }

    /// Whether the session replays a captured CUDA graph.
    pub fn cuda_graph(&self) -> bool {
        self.cuda_graph
    }

    /// Runs the model once on `tensors` (each [1, 3, h, w] = `item_shape`)
    /// and returns each one's candidates above its confidence threshold, at
    /// most its `max_detections` most confident ([`keep_most_confident`]),
    /// in output position and class order (as the host decoder gives them). Without a batch
    /// size fixed by `warm_up` one tensor is read in place; otherwise the
    /// tensors are gathered on the GPU into one batch of that size.
    pub fn run(
        &mut self,
        session: &mut Session,
        tensors: &[&DeviceTensor],
        item_shape: [usize; 4],
        limits: &[DecodeLimits],
    ) -> Result<Vec<Vec<Candidate>>, GpuError> {
        let item_len = item_shape.iter().product::<usize>() * self.input_element.size();
        let frames = self.frames_per_run.max(tensors.len());
        // The tensors were written on the GPU's shared stream: a session
        // of a pool, on its own stream, waits (on the GPU) until they are.
        if !Arc::ptr_eq(&self.stream, self.gpu.stream()) {
            for t in tensors {
                t.ready_on(&self.stream)?;
            }
        }
        // A captured graph reads the gathering buffer, where it was captured.
        let input = if frames == 1 && !self.cuda_graph {
            tensors[0].device_ptr()
        } else {
            let stream = self.stream.clone();
            let batch = self.batch_buffer(item_len * frames)?;
            for (i, t) in tensors.iter().enumerate() {
                stream
                    .memcpy_dtod(
                        t.slice(),
                        &mut batch.slice_mut(i * item_len..(i + 1) * item_len),
                    )
                    .map_err(CudaError::driver("cannot gather the batch on the GPU"))?;
            }
            let ptr = batch.device_ptr(&stream).0;
            ptr
        };
        let mut shape = item_shape;
        shape[0] = frames;
        let outputs = self.infer(session, input, shape)?;
        // Only the real frames' outputs are decoded; the padding's are not.
        self.decode(&outputs, limits)
    }

    /// Fixes the batch size of every run at `batch` (frames beyond the real
    /// ones are padding, whose outputs are ignored) and runs it once. ONNX
    /// Runtime's CUDA convolutions rebuild their cuDNN plans whenever the
    /// input shape differs from the previous run's, which costs far more
    /// than the padding: measured on the H100, batches of changing size ran
    /// at a few frames a second.
    pub fn warm_up(
        &mut self,
        session: &mut Session,
        item_shape: [usize; 4],
        batch: usize,
    ) -> Result<(), GpuError> {
        let item_len = item_shape.iter().product::<usize>() * self.input_element.size();
        let stream = self.stream.clone();
        let zeros = {
            let buffer = self.batch_buffer(item_len * batch)?;
            stream
                .memset_zeros(buffer)
                .map_err(CudaError::driver("cannot clear the warm-up batch"))?;
            buffer.device_ptr(&stream).0
        };
        self.frames_per_run = batch;
        let mut shape = item_shape;
        shape[0] = batch;
        // With a CUDA graph ONNX Runtime runs normally first, then captures
        // (and replays) on a later run: all before the first frame.
        let runs = if self.cuda_graph {
            GRAPH_WARM_UP_RUNS
        } else {
            1
        };
        // ONNX Runtime captures in CUDA's global mode, where another
        // thread's allocation invalidates the capture: sessions loading at
        // once (of different batch groups; a graph's session is alone in
        // its own, see batcher::pool_sessions) take turns (measured on the
        // H200: four parallel captures failed with "operation failed due
        // to a previous error during capture").
        let _capturing = self
            .cuda_graph
            .then(|| CAPTURE.lock().unwrap_or_else(|e| e.into_inner()));
        for _ in 0..runs {
            self.infer(session, zeros, shape).map_err(|e| {
                if self.cuda_graph {
                    GpuError::GraphCapture(Box::new(e))
                } else {
                    e
                }
            })?;
        }
        stream
            .synchronize()
            .map_err(CudaError::driver("the warm-up run failed"))?;
        Ok(())
    }

    /// The gathering buffer, grown to hold at least `len` bytes.
    fn batch_buffer(&mut self, len: usize) -> Result<&mut CudaSlice<u8>, GpuError> {
        if self.batch.as_ref().is_none_or(|b| b.len() < len) {
            // SAFETY: callers fill what they use before the model reads it.
            let buffer = unsafe { self.stream.alloc::<u8>(len) }
                .map_err(CudaError::driver("cannot allocate GPU memory for a batch"))?;
            self.batch = Some(buffer);
        }
        Ok(self.batch.as_mut().expect("allocated above"))
    }

    /// Runs the model on `shape` values (of the input's element type) at
    /// device address `input`; returns the device address of each decoded
    /// output as float32, which the binding (or `converted`) keeps until
    /// the next run.
    fn infer(
        &mut self,
        session: &mut Session,
        input: u64,
        shape: [usize; 4],
    ) -> Result<Vec<u64>, GpuError> {
        // SAFETY: `input` holds `shape` values of the input's element type
        // on this GPU (a tensor the caller holds, or our batch buffer) for
        // the whole run.
        let input =
            unsafe { self.wrap(input, self.input_element, shape.map(|d| d as i64).to_vec())? };
        self.bind_input(&input)?;
        if shape[0] != self.bound_batch {
            if self.cuda_graph {
                self.bind_graph_outputs(shape[0])?;
            } else {
                // After a run the binding holds that run's output, which ONNX
                // Runtime then takes as pre-allocated and of a fixed shape: a
                // new batch size needs fresh output bindings.
                for (name, _) in &self.outputs {
                    self.binding
                        .bind_output_to_device(name, &self.memory_info)
                        .map_err(|e| GpuError::KeepOutput {
                            name: name.clone(),
                            source: Arc::new(e),
                        })?;
                }
            }
            self.bound_batch = shape[0];
        }
        let results = session
            .run_binding(&self.binding)
            .map_err(GpuError::ort("inference failed"))?;
        let mut pointers = Vec::with_capacity(self.outputs.len());
        for (i, (name, dims)) in self.outputs.iter().enumerate() {
            let output = results
                .get(name)
                .ok_or_else(|| GpuError::NoOutput { name: name.clone() })?;
            let is_half = self.converted[i].is_some();
            let (shape_of, data) = if is_half {
                let t = output
                    .view()
                    .downcast::<ort::value::TensorValueType<half::f16>>()
                    .map_err(|e| GpuError::OutputType {
                        name: name.clone(),
                        element: "float16",
                        source: Arc::new(e),
                    })?;
                (t.shape().to_vec(), t.data_ptr() as u64)
            } else {
                let t = output
                    .view()
                    .downcast::<ort::value::TensorValueType<f32>>()
                    .map_err(|e| GpuError::OutputType {
                        name: name.clone(),
                        element: "float32",
                        source: Arc::new(e),
                    })?;
                (t.shape().to_vec(), t.data_ptr() as u64)
            };
            // The decoding kernel reads the whole of each image's output: a
            // model whose symbolic dimensions resolve otherwise would have it
            // read past the output.
            let actual: Vec<i64> = shape_of;
            let expected: Vec<i64> = std::iter::once(shape[0])
                .chain(dims.iter().copied())
                .map(|d| d as i64)
                .collect();
            if actual != expected {
                return Err(GpuError::OutputShape {
                    name: name.clone(),
                    actual,
                    expected,
                    batch: shape[0],
                });
            }
            pointers.push(if is_half {
                let kernel = self
                    .convert_kernel
                    .as_ref()
                    .expect("compiled when an output is fp16");
                let buffer = self.converted[i]
                    .as_mut()
                    .expect("an fp16 output has a float32 buffer");
                let len = actual.iter().product::<i64>() as usize;
                to_float32(&self.stream, kernel, data, len, buffer)?
            } else {
                data
            });
        }
        Ok(pointers)
    }

    /// Decodes the batch's outputs at `outputs` on the GPU, keeping
    /// what is above each image's threshold, and copies the survivors to
    /// the host (two copies per batch, not per image). An image with more
    /// than its `max_detections` is decoded again with a threshold taken
    /// from its confidence histogram, so that about that many cross to the
    /// host; the host then keeps exactly the most confident.
    fn decode(
        &mut self,
        outputs: &[u64],
        limits: &[DecodeLimits],
    ) -> Result<Vec<Vec<Candidate>>, GpuError> {
        let images = limits.len();
        let copy_error = CudaError::driver("cannot read the decoded candidates");
        let mut thresholds: Vec<f32> = limits.iter().map(|l| l.confidence).collect();
        // Without a limit an image can reach, the histograms are not needed.
        let possible = self.decoder.max_candidates();
        let mut histogram = limits.iter().any(|l| l.max_detections < possible);
        let total = loop {
            let counts = self.launch_decode(outputs, &thresholds, histogram)?;
            if std::mem::take(&mut histogram) {
                let over: Vec<usize> = (0..images)
                    .filter(|&i| counts[1 + i] as usize > limits[i].max_detections)
                    .collect();
                if !over.is_empty() {
                    let stream = self.stream.clone();
                    let bins = stream
                        .clone_dtoh(&self.histograms.slice(..images * BINS))
                        .map_err(copy_error)?;
                    for i in over {
                        thresholds[i] =
                            bounding_threshold(&bins[i * BINS..(i + 1) * BINS], limits[i]);
                    }
                    continue;
                }
            }
            let total = counts[0] as usize;
            if total <= self.candidates.len() / RECORD {
                break total;
            }
            // More survivors than room (a very low threshold on a batch):
            // grow and decode again, so nothing is dropped.
            self.candidates =
                self.stream
                    .alloc_zeros::<f32>(total * RECORD)
                    .map_err(CudaError::decode_alloc())?;
        };
        let mut per_image: Vec<Vec<(u32, Candidate)>> = vec![Vec::new(); images];
        if total > 0 {
            let records = self
                .stream
                .clone_dtoh(&self.candidates.slice(..total * RECORD))
                .map_err(copy_error)?;
            for r in records.chunks_exact(RECORD) {
                per_image[r[7] as usize].push((
                    r[6] as u32,
                    Candidate {
                        class_id: r[5] as u32,
                        confidence: r[4],
                        x1: r[0],
                        y1: r[1],
                        x2: r[2],
                        y2: r[3],
                    },
                ));
            }
        }
        Ok(per_image
            .into_iter()
            .zip(limits)
            .map(|(mut image, limit)| {
                // The kernel appends in whatever order threads finish; in
                // (position, class) order, the host path's, ties resolve alike.
                image.sort_by_key(|(row, c)| (*row, c.class_id));
                let image = image.into_iter().map(|(_, c)| c).collect();
                keep_most_confident(image, limit.max_detections)
            })
            .collect())
    }

    /// Runs the decoding kernel over the batch's first `thresholds.len()`
    /// images with those thresholds (and, if `histogram`, fills the
    /// per-image histograms); returns the survivors' counts, of the batch
    /// then of each image. Records beyond the candidate buffer are counted,
    /// not written.
    fn launch_decode(
        &mut self,
        outputs: &[u64],
        thresholds: &[f32],
        histogram: bool,
    ) -> Result<Vec<u32>, GpuError> {
        let stream = self.stream.clone();
        let images = thresholds.len();
        let alloc_error = CudaError::decode_alloc();
        if self.counts.len() < 1 + images {
            self.counts = stream.alloc_zeros::<u32>(1 + images).map_err(alloc_error)?;
            self.thresholds = stream.alloc_zeros::<f32>(images).map_err(alloc_error)?;
            self.histograms = stream
                .alloc_zeros::<u32>(images * BINS)
                .map_err(alloc_error)?;
        }
        let copy_error = CudaError::driver("cannot prepare output decoding");
        stream
            .memcpy_htod(thresholds, &mut self.thresholds.slice_mut(..images))
            .map_err(copy_error)?;
        stream
            .memset_zeros(&mut self.counts.slice_mut(..1 + images))
            .map_err(copy_error)?;
        let histograms = if histogram {
            stream
                .memset_zeros(&mut self.histograms.slice_mut(..images * BINS))
                .map_err(copy_error)?;
            self.histograms.device_ptr(&stream).0
        } else {
            // The kernel's "no histogram".
            0u64
        };
        let targets = CandidateTargets {
            thresholds: self.thresholds.device_ptr(&stream).0,
            records: self.candidates.device_ptr(&stream).0,
            counts: self.counts.device_ptr(&stream).0,
            histograms,
            capacity: (self.candidates.len() / RECORD) as u32,
        };
        let mut config = LaunchConfig::for_num_elems(self.decoder.positions() as u32);
        config.grid_dim.1 = images as u32;
        // SAFETY: each output holds at least `images` x its dims floats
        // (its shape was checked in `infer`), the thresholds `images`, the
        // counts 1 + `images`, the histograms `images` x BINS (or null,
        // which the kernel skips), the candidate buffer `capacity` records.
        // All on our stream, like the copies.
        unsafe {
            self.decoder
                .launch(&stream, &self.decode_kernel, config, outputs, targets)
        }
        .map_err(CudaError::driver(
            "the output decoding kernel failed to launch",
        ))?;
        let counts = stream
            .clone_dtoh(&self.counts.slice(..1 + images))
            .map_err(CudaError::driver("cannot read the decoded candidates"))?;
        Ok(counts)
    }
}

/// Converts `len` fp16 values at device address `input` into `buffer` (grown
/// to fit) with `kernel` (convert.cu); returns the buffer's address. Queued
/// on `stream`, so before the decoding kernel that reads it.
fn to_float32(
    stream: &Arc<CudaStream>,
    kernel: &CudaFunction,
    input: u64,
    len: usize,
    buffer: &mut CudaSlice<f32>,
) -> Result<u64, CudaError> {
    if buffer.len() < len {
        *buffer = stream.alloc_zeros::<f32>(len).map_err(CudaError::decode_alloc())?;
    }
    let out = buffer.device_ptr(stream).0;
    let n = len as u64;
    // SAFETY: `input` holds `len` fp16 values (the output of the run just
    // done, its shape checked) and `out` room for `len` floats, both on
    // the stream's device; the kernel reads and writes below `n` only.
    unsafe {
        stream
            .launch_builder(kernel)
            .arg(&input)
            .arg(&out)
            .arg(&n)
            .launch(LaunchConfig::for_num_elems(len as u32))
    }
    .map_err(CudaError::driver(
        "the fp16 output conversion kernel failed to launch",
    ))?;
    Ok(out)
}

/// Runs at start with a CUDA graph: ONNX Runtime's CUDA provider runs
/// normally a few times (its `min_num_runs_before_cuda_graph_capture`)
/// before it captures; more runs only replay.
const GRAPH_WARM_UP_RUNS: usize = 4;

/// Held while a session captures its CUDA graph (see `warm_up`).
static CAPTURE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The threshold that keeps, of an image's survivors counted in `bins`
/// (its confidence histogram), the fewest whole top bins holding at least
/// `limit.max_detections`, and so every one of its most confident
/// (never below `limit.confidence`).
fn bounding_threshold(bins: &[u32], limit: DecodeLimits) -> f32 {
    if limit.max_detections == 0 {
        return f32::INFINITY;
    }
    let mut kept = 0usize;
    for b in (1..bins.len()).rev() {
        kept += bins[b] as usize;
        if kept >= limit.max_detections {
            // Bin b and up hold exactly the confidences >= b / BINS (exact
            // in f32); the kernel keeps those above the threshold, so take
            // the float just below that edge.
            let edge = b as f32 / bins.len() as f32;
            let below = f32::from_bits(edge.to_bits() - 1);
            return limit.confidence.max(below);
        }
    }
    // Only bin 0 is left to drop from: keep everything.
    limit.confidence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(confidence: f32, max_detections: usize) -> DecodeLimits {
        DecodeLimits {
            confidence,
            max_detections,
        }
    }

    /// What the kernel puts in a histogram.
    fn histogram(confidences: &[f32], threshold: f32) -> Vec<u32> {
        let mut bins = vec![0u32; BINS];
        for &c in confidences.iter().filter(|&&c| c > threshold) {
            bins[((c * BINS as f32).clamp(0.0, (BINS - 1) as f32)) as usize] += 1;
        }
        bins
    }

    #[test]
    fn bounding_keeps_every_one_of_the_most_confident() {
        let confidences: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919) % 10_007) as f32 / 10_007.0)
            .collect();
        for max in [1, 5, 300, 4_999, 9_000] {
            let t = bounding_threshold(&histogram(&confidences, 0.0), limit(0.0, max));
            let mut sorted = confidences.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let kth = sorted[max - 1];
            let kept = confidences.iter().filter(|&&c| c > t).count();
            assert!(kth > t, "max {max}: threshold {t} drops the {max}th {kth}");
            // Whole bins only: at most one bin's worth (about 5 here) more.
            assert!(kept >= max && kept <= max + 10, "max {max}: kept {kept}");
        }
    }

    #[test]
    fn bounding_is_exact_at_bin_edges() {
        // Confidences exactly on edges: 0.5 is bin 1024's first value.
        let confidences = [0.5, 0.5, 0.75, 0.25];
        let t = bounding_threshold(&histogram(&confidences, 0.1), limit(0.1, 3));
        assert!(t < 0.5 && t > 0.499);
        assert_eq!(confidences.iter().filter(|&&c| c > t).count(), 3);
    }

    #[test]
    fn bounding_never_lowers_the_threshold_and_handles_zero() {
        let confidences = [0.9, 0.8, 0.7];
        let t = bounding_threshold(&histogram(&confidences, 0.6), limit(0.6, 3));
        assert!((0.6..0.7).contains(&t), "{t}");
        // Bin 1434 starts at 0.70019531, below the threshold: kept as is.
        let close = [0.7003, 0.7004];
        let t = bounding_threshold(&histogram(&close, 0.7002), limit(0.7002, 1));
        assert_eq!(t, 0.7002);
        assert_eq!(
            bounding_threshold(&histogram(&confidences, 0.6), limit(0.6, 0)),
            f32::INFINITY
        );
        // Everything in bin 0: nothing can be dropped by bins.
        let tiny = [1e-5, 2e-5, 3e-5];
        assert_eq!(
            bounding_threshold(&histogram(&tiny, 0.0), limit(0.0, 1)),
            0.0
        );
    }
}
