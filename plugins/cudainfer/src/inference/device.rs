//! Inference on tensors in GPU memory: the input is bound to ONNX Runtime
//! as device memory (no copy), the output stays on the GPU, where a kernel
//! decodes it and drops what is under the confidence threshold; only the
//! surviving candidates are copied to the host.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{Shape, TensorRefMut};
use ort::AsPointer;

use crate::cuda::{DeviceTensor, Gpu};
use crate::parsers::{Candidate, DeviceDecoding};

/// Floats per candidate record written by the decoding kernel.
const RECORD: usize = 8;

pub struct DeviceRunner {
    gpu: Arc<Gpu>,
    decode_kernel: CudaFunction,
    input_name_c: std::ffi::CString,
    memory_info: MemoryInfo<'static>,
    binding: IoBinding,
    output_name: String,
    /// The batch size the output binding was last used with.
    bound_batch: usize,
    /// Frames per run (padded up to this); 1 until `warm_up`.
    run_batch: usize,
    anchors: CudaSlice<f32>,
    rows: usize,
    num_classes: usize,
    candidates: CudaSlice<f32>,
    count: CudaSlice<u32>,
    /// Where several tensors are gathered into one batch.
    batch: Option<CudaSlice<f32>>,
}

impl DeviceRunner {
    pub fn new(
        gpu: Arc<Gpu>,
        session: &Session,
        input_name: &str,
        decoding: DeviceDecoding,
    ) -> Result<Self, String> {
        let decode_kernel = gpu.kernels()?.yolox_decode.clone();
        let DeviceDecoding::Yolox {
            anchors,
            num_classes,
        } = decoding;
        let memory_info = MemoryInfo::new(
            AllocationDevice::CUDA,
            gpu.ordinal() as i32,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(|e| format!("cannot describe CUDA memory to ONNX Runtime: {e}"))?;
        let mut binding = session
            .create_binding()
            .map_err(|e| format!("cannot create an ONNX Runtime I/O binding: {e}"))?;
        let output_name = session.outputs()[0].name().to_string();
        // ONNX Runtime allocates the output on the GPU once and reuses it.
        binding
            .bind_output_to_device(&output_name, &memory_info)
            .map_err(|e| format!("cannot keep the model output on the GPU: {e}"))?;
        let stream = gpu.stream();
        let alloc_error = |e| format!("cannot allocate GPU memory for output decoding: {e}");
        let flat: Vec<f32> = anchors.iter().flatten().copied().collect();
        let rows = anchors.len();
        let anchors = stream.clone_htod(&flat).map_err(alloc_error)?;
        // Room for every (row, class) pair: nothing is ever dropped.
        let candidates = stream
            .alloc_zeros::<f32>(rows * num_classes * RECORD)
            .map_err(alloc_error)?;
        let count = stream.alloc_zeros::<u32>(1).map_err(alloc_error)?;
        Ok(Self {
            gpu,
            decode_kernel,
            input_name_c: std::ffi::CString::new(input_name)
                .map_err(|_| "the model's input name contains a NUL byte".to_string())?,
            memory_info,
            binding,
            output_name,
            bound_batch: 1,
            run_batch: 1,
            anchors,
            rows,
            num_classes,
            candidates,
            count,
            batch: None,
        })
    }

    /// Binds the borrowed device tensor as the input, through the C API:
    /// `IoBinding::bind_input` copies borrowed tensors (to guard against
    /// aliasing), and that device-to-device copy runs on CUDA's legacy
    /// default stream, which waits for the decoder's work and deadlocks
    /// inside nvh264dec's streaming thread. `input` must outlive the run.
    fn bind_input(&mut self, input: &TensorRefMut<'_, f32>) -> Result<(), String> {
        let api = ort::api();
        // SAFETY: valid binding, NUL-terminated name and value; ONNX Runtime
        // keeps its own reference to the value's tensor description.
        unsafe {
            let status = (api.BindInput)(
                self.binding.ptr().cast_mut(),
                self.input_name_c.as_ptr(),
                input.ptr(),
            );
            if status.0.is_null() {
                return Ok(());
            }
            let message = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
                .to_string_lossy()
                .into_owned();
            (api.ReleaseStatus)(status.0);
            Err(format!("cannot bind the GPU tensor: {message}"))
        }
    }

    /// Runs the model once on `tensors` (each [1, 3, h, w] = `item_shape`)
    /// and returns each one's candidates above its threshold, in output row
    /// and class order (as the host decoder gives them). Without a batch
    /// size fixed by `warm_up` one tensor is read in place; otherwise the
    /// tensors are gathered on the GPU into one batch of that size.
    pub fn run(
        &mut self,
        session: &mut Session,
        tensors: &[&DeviceTensor],
        item_shape: [usize; 4],
        thresholds: &[f32],
    ) -> Result<Vec<Vec<Candidate>>, String> {
        let item_len: usize = item_shape.iter().product();
        let run_batch = self.run_batch.max(tensors.len());
        let input = if run_batch == 1 {
            tensors[0].device_ptr()
        } else {
            let stream = self.gpu.stream().clone();
            let batch = self.batch_buffer(item_len * run_batch)?;
            for (i, t) in tensors.iter().enumerate() {
                stream
                    .memcpy_dtod(
                        t.slice(),
                        &mut batch.slice_mut(i * item_len..(i + 1) * item_len),
                    )
                    .map_err(|e| format!("cannot gather the batch on the GPU: {e}"))?;
            }
            let ptr = batch.device_ptr(&stream).0;
            ptr
        };
        let mut shape = item_shape;
        shape[0] = run_batch;
        let output = self.infer(session, input, shape)?;
        // Only the real frames' outputs are decoded; the padding's are not.
        self.decode(output, thresholds)
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
    ) -> Result<(), String> {
        let item_len: usize = item_shape.iter().product();
        let stream = self.gpu.stream().clone();
        let zeros = {
            let buffer = self.batch_buffer(item_len * batch)?;
            stream
                .memset_zeros(buffer)
                .map_err(|e| format!("cannot clear the warm-up batch: {e}"))?;
            buffer.device_ptr(&stream).0
        };
        self.run_batch = batch;
        let mut shape = item_shape;
        shape[0] = batch;
        self.infer(session, zeros, shape)?;
        stream
            .synchronize()
            .map_err(|e| format!("the warm-up run failed: {e}"))
    }

    /// The gathering buffer, grown to hold at least `len` floats.
    fn batch_buffer(&mut self, len: usize) -> Result<&mut CudaSlice<f32>, String> {
        if self.batch.as_ref().is_none_or(|b| b.len() < len) {
            // SAFETY: callers fill what they use before the model reads it.
            let buffer = unsafe { self.gpu.stream().alloc::<f32>(len) }
                .map_err(|e| format!("cannot allocate GPU memory for a batch: {e}"))?;
            self.batch = Some(buffer);
        }
        Ok(self.batch.as_mut().expect("allocated above"))
    }

    /// Runs the model on `shape` floats at device address `input`; returns
    /// the device address of the output, which the binding keeps until the
    /// next run.
    fn infer(
        &mut self,
        session: &mut Session,
        input: u64,
        shape: [usize; 4],
    ) -> Result<u64, String> {
        // SAFETY: `input` holds `shape` floats on this GPU (a tensor the
        // caller holds, or our batch buffer) for the whole run.
        let input = unsafe {
            TensorRefMut::<f32>::from_raw(
                self.memory_info.clone(),
                input as usize as *mut _,
                Shape::new(shape.map(|d| d as i64)),
            )
        }
        .map_err(|e| format!("cannot wrap the GPU tensor for ONNX Runtime: {e}"))?;
        self.bind_input(&input)?;
        if shape[0] != self.bound_batch {
            // After a run the binding holds that run's output, which ONNX
            // Runtime then takes as pre-allocated and of a fixed shape: a
            // new batch size needs a fresh output binding.
            self.binding
                .bind_output_to_device(&self.output_name, &self.memory_info)
                .map_err(|e| format!("cannot keep the model output on the GPU: {e}"))?;
            self.bound_batch = shape[0];
        }
        let outputs = session
            .run_binding(&self.binding)
            .map_err(|e| format!("inference failed: {e}"))?;
        let output = outputs[0]
            .view()
            .downcast::<ort::value::TensorValueType<f32>>()
            .map_err(|e| format!("the model output is not float32: {e}"))?
            .data_ptr() as u64;
        Ok(output)
    }

    /// Decodes the batch's output at `output_ptr` on the GPU, keeping what
    /// is above the lowest threshold, copies the survivors to the host (two
    /// copies per batch, not per image), then applies each image's own
    /// threshold.
    fn decode(
        &mut self,
        output_ptr: u64,
        thresholds: &[f32],
    ) -> Result<Vec<Vec<Candidate>>, String> {
        let stream = self.gpu.stream().clone();
        let copy_error = |e| format!("cannot read the decoded candidates: {e}");
        let lowest = thresholds.iter().copied().fold(f32::INFINITY, f32::min);
        let n = loop {
            stream.memset_zeros(&mut self.count).map_err(copy_error)?;
            let (rows, classes) = (self.rows as i32, self.num_classes as i32);
            let capacity = (self.candidates.len() / RECORD) as u32;
            let anchors = self.anchors.device_ptr(&stream).0;
            let candidates = self.candidates.device_ptr(&stream).0;
            let count = self.count.device_ptr(&stream).0;
            let mut config = LaunchConfig::for_num_elems(self.rows as u32);
            config.grid_dim.1 = thresholds.len() as u32;
            // SAFETY: the output holds images x rows x (5 + classes) floats,
            // the anchors rows x 3, the candidate buffer `capacity` records.
            unsafe {
                stream
                    .launch_builder(&self.decode_kernel)
                    .arg(&output_ptr)
                    .arg(&anchors)
                    .arg(&rows)
                    .arg(&classes)
                    .arg(&lowest)
                    .arg(&candidates)
                    .arg(&count)
                    .arg(&capacity)
                    .launch(config)
            }
            .map_err(|e| format!("the output decoding kernel failed to launch: {e}"))?;
            let n = stream.clone_dtoh(&self.count).map_err(copy_error)?[0] as usize;
            if n <= capacity as usize {
                break n;
            }
            // More survivors than room (a very low threshold on a batch):
            // grow and decode again, so nothing is dropped.
            self.candidates = stream
                .alloc_zeros::<f32>(n * RECORD)
                .map_err(|e| format!("cannot allocate GPU memory for output decoding: {e}"))?;
        };
        let mut per_image: Vec<Vec<(u32, Candidate)>> = vec![Vec::new(); thresholds.len()];
        if n > 0 {
            let records = stream
                .clone_dtoh(&self.candidates.slice(..n * RECORD))
                .map_err(copy_error)?;
            for r in records.chunks_exact(RECORD) {
                let image = r[7] as usize;
                if r[4] > thresholds[image] {
                    per_image[image].push((
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
        }
        Ok(per_image
            .into_iter()
            .map(|mut image| {
                // The kernel appends in whatever order threads finish.
                image.sort_by_key(|(row, c)| (*row, c.class_id));
                image.into_iter().map(|(_, c)| c).collect()
            })
            .collect())
    }
}
