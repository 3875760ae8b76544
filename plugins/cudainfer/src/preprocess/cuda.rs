//! Executes a [`Plan`] on frames in CUDA memory with one kernel launch per
//! frame (`preprocess.cu`). The filter tables are the CPU
//! path's, uploaded once per caps, so both compute the same function.

use std::sync::{Arc, LazyLock, Mutex, Once};

use cudarc::driver::{CudaEvent, CudaFunction, CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};

use super::{AxisTaps, Plan, PreprocessError};
use crate::cuda::device::KernelSource;
use crate::cuda::gst_cuda::{self, DeviceFrame};
use crate::cuda::{CudaError, DeviceTensor, Gpu, TensorPool};
use crate::spec::ElementType;
use crate::tensor::{Tensor, TensorStorage};

// The element's category (GStreamer returns the existing one by name).
static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "cudapreprocess",
        gst::DebugColorFlags::empty(),
        Some("Frame to model tensor pre-processing"),
    )
});

/// Debug switch: `CUDAINFER_NO_PRODUCER_WAIT=1` skips the wait for the
/// decoder's CUDA stream, to show that the race it prevents is real
/// (torn or stale tensors with GStreamer >= 1.24 decoders). Read once.
static NO_PRODUCER_WAIT: LazyLock<bool> =
    LazyLock::new(|| std::env::var("CUDAINFER_NO_PRODUCER_WAIT").is_ok_and(|v| v == "1"));

/// Says once per process whether frames' producer streams are waited for.
fn log_producer_wait() {
    static LOGGED: Once = Once::new();
    LOGGED.call_once(|| {
        if *NO_PRODUCER_WAIT {
            gst::warning!(
                CAT,
                "producer-stream wait disabled by CUDAINFER_NO_PRODUCER_WAIT=1 (a debug switch): \
                 frames of GStreamer >= 1.24 decoders may be read while still being written"
            );
        } else if gst_cuda::has_memory_streams() {
            gst::info!(
                CAT,
                "producer-stream wait active: the kernel waits (on the GPU) for the stream each CUDA frame is written on"
            );
        } else {
            gst::info!(
                CAT,
                "producer-stream wait inactive: GStreamer's CUDA library predates 1.24, whose decoders \
                 synchronise before pushing"
            );
        }
    });
}

/// The kernel writing the tensor in `element_type`: both entry points share
/// one body in preprocess.cu.
fn kernel_source(element_type: ElementType) -> KernelSource {
    KernelSource {
        sources: &[include_str!("preprocess.cu")],
        name: match element_type {
            ElementType::Float32 => "preprocess",
            ElementType::Float16 => "preprocess_f16",
        },
    }
}

/// Mirrors `AxisTable` in preprocess.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct AxisTable {
    first_at: i32,
    count_at: i32,
    weight_at: i32,
    max_taps: i32,
}

/// Mirrors `Component` in preprocess.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Component {
    data: u64,
    pitch: i32,
    step: i32,
    x: AxisTable,
    y: AxisTable,
}

/// Mirrors `PreprocessParams` in preprocess.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct PreprocessParams {
    comp: [Component; 3],
    ints: u64,
    floats: u64,
    out: u64,
    content_w: i32,
    content_h: i32,
    tensor_w: i32,
    tensor_h: i32,
    content_x: i32,
    content_y: i32,
    is_yuv: i32,
    y_offset: f32,
    y_gain: f32,
    uv_gain: f32,
    r_v: f32,
    g_u: f32,
    g_v: f32,
    b_u: f32,
    source_channel: [i32; 3],
    gain: [f32; 3],
    bias: [f32; 3],
    pad: [f32; 3],
}

// SAFETY: plain old data with the C layout the kernel expects.
unsafe impl cudarc::driver::DeviceRepr for PreprocessParams {}

/// Filter tables of all axes, flattened for the kernel.
#[derive(Default)]
struct Tables {
    ints: Vec<i32>,
    floats: Vec<f32>,
}

impl Tables {
    fn add(&mut self, taps: &[AxisTaps]) -> AxisTable {
        let max_taps = taps.iter().map(|t| t.weights.len()).max().unwrap_or(1);
        let table = AxisTable {
            first_at: self.ints.len() as i32,
            count_at: (self.ints.len() + taps.len()) as i32,
            weight_at: self.floats.len() as i32,
            max_taps: max_taps as i32,
        };
        self.ints.extend(taps.iter().map(|t| t.first as i32));
        self.ints
            .extend(taps.iter().map(|t| t.weights.len() as i32));
        for t in taps {
            self.floats.extend(&t.weights);
            self.floats
                .extend(std::iter::repeat_n(0.0, max_taps - t.weights.len()));
        }
        table
    }
}

pub struct CudaPreprocessor {
    plan: Plan,
    kernel: CudaFunction,
    params: PreprocessParams,
    pool: TensorPool,
    /// Recorded on a frame's producer stream for ours to wait on; made once.
    /// The lock keeps record and wait of one frame together.
    producer_done: Mutex<CudaEvent>,
    // Referenced by `params`; kept alive here.
    _ints: CudaSlice<i32>,
    _floats: CudaSlice<f32>,
}

/// The kernel's parameters for `plan`, with its filter tables uploaded
/// (the slices must outlive the launches that use them; their drop is
/// ordered after those on the stream).
fn upload(
    stream: &Arc<cudarc::driver::CudaStream>,
    plan: &Plan,
) -> Result<(PreprocessParams, CudaSlice<i32>, CudaSlice<f32>), PreprocessError> {
    let mut tables = Tables::default();
    let mut params = PreprocessParams::default();
    for (dst, c) in params.comp.iter_mut().zip(&plan.components) {
        dst.step = c.step as i32;
        dst.x = tables.add(&c.x_taps);
        dst.y = tables.add(&c.y_taps);
    }
    let upload_error = CudaError::driver("cannot upload the filter tables to the GPU");
    let ints = stream.clone_htod(&tables.ints).map_err(upload_error)?;
    let floats = stream.clone_htod(&tables.floats).map_err(upload_error)?;
    params.ints = ints.device_ptr(stream).0;
    params.floats = floats.device_ptr(stream).0;
    let spec = &plan.spec;
    params.content_w = plan.geometry.content_width as i32;
    params.content_h = plan.geometry.content_height as i32;
    params.content_x = plan.geometry.content_x as i32;
    params.content_y = plan.geometry.content_y as i32;
    params.tensor_w = spec.width as i32;
    params.tensor_h = spec.height as i32;
    if let Some(yuv) = &plan.yuv {
        params.is_yuv = 1;
        params.y_offset = yuv.y_offset;
        params.y_gain = yuv.y_gain;
        params.uv_gain = yuv.uv_gain;
        params.r_v = yuv.r_v;
        params.g_u = yuv.g_u;
        params.g_v = yuv.g_v;
        params.b_u = yuv.b_u;
    }
    params.source_channel = plan.norm.source_channel.map(|c| c as i32);
    params.gain = plan.norm.gain;
    params.bias = plan.norm.bias;
    params.pad = plan.pad_values();
    Ok((params, ints, floats))
}

impl CudaPreprocessor {
    pub fn new(gpu: Arc<Gpu>, plan: Plan) -> Result<Self, PreprocessError> {
        let kernel = gpu.kernel(kernel_source(plan.spec.element_type))?;
        // The GPU's one stream, as inference: tried on the H100, a stream per
        // pre-processor ordered through the tensors' events was faster at 16
        // streams but let batched results differ from unbatched ones.
        let stream = gpu.stream();
        let (params, ints, floats) = upload(stream, &plan)?;
        let len = 3 * plan.spec.width as usize * plan.spec.height as usize;
        let producer_done = stream
            .context()
            .new_event(None)
            .map_err(CudaError::driver("cannot create a CUDA event"))?;
        log_producer_wait();
        Ok(Self {
            producer_done: Mutex::new(producer_done),
            pool: TensorPool::new(gpu, len, plan.spec.element_type),
            plan,
            kernel,
            params,
            _ints: ints,
            _floats: floats,
        })
    }

    /// Frames must live in the context our kernels and ONNX Runtime use.
    fn check_context(&self, frame: &DeviceFrame) -> Result<(), PreprocessError> {
        let gpu = self.pool.gpu();
        if frame.context == gpu.cu_context() {
            return Ok(());
        }
        Err(PreprocessError::ForeignContext {
            frame_context: frame.context,
            ordinal: gpu.ordinal(),
            primary: gpu.cu_context(),
        })
    }

    /// Queues the kernel for one frame; the tensor is ready on the GPU's
    /// stream when the kernel is done (no host wait here).
    pub fn run(&self, frame: DeviceFrame) -> Result<Tensor, PreprocessError> {
        let mut tensors = self.launch(frame, &[(&self.plan, self.params)])?;
        Ok(tensors.pop().expect("one tensor per plan"))
    }

    /// Queues one kernel per region plan (objects' crops of one frame, each
    /// made for this preprocessor's tensor spec); each tensor keeps the
    /// frame mapped until it is released.
    pub fn run_regions(
        &self,
        frame: DeviceFrame,
        plans: &[Plan],
    ) -> Result<Vec<Tensor>, PreprocessError> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let stream = self.pool.gpu().stream();
        let mut uploaded = Vec::with_capacity(plans.len());
        for plan in plans {
            uploaded.push(upload(stream, plan)?);
        }
        let with_params: Vec<(&Plan, PreprocessParams)> =
            plans.iter().zip(&uploaded).map(|(p, u)| (p, u.0)).collect();
        // The tables go once the launches are queued: cudarc frees device
        // memory in stream order, after the kernels that read them.
        self.launch(frame, &with_params)
    }

    fn launch(
        &self,
        frame: DeviceFrame,
        plans: &[(&Plan, PreprocessParams)],
    ) -> Result<Vec<Tensor>, PreprocessError> {
        self.check_context(&frame)?;
        let gpu = self.pool.gpu();
        let stream = gpu.stream();
        if !*NO_PRODUCER_WAIT {
            let event = self.producer_done.lock().unwrap_or_else(|e| e.into_inner());
            gst_cuda::wait_for_producer(gpu, &event, &frame)?;
        }
        let source = Arc::new(frame.memory);
        let mut tensors = Vec::with_capacity(plans.len());
        for (plan, params) in plans {
            let mut buffer = self.pool.take()?;
            let mut params = *params;
            for (dst, c) in params.comp.iter_mut().zip(&plan.components) {
                let plane = c.plane as usize;
                let pitch = frame.strides[plane];
                dst.data =
                    frame.planes[plane] + c.offset as u64 + c.first_row as u64 * pitch as u64;
                dst.pitch = pitch;
            }
            params.out = buffer.slice_mut().device_ptr(stream).0;
            let (w, h) = (plan.spec.width, plan.spec.height);
            let config = LaunchConfig {
                grid_dim: (w.div_ceil(32), h.div_ceil(8), 1),
                block_dim: (32, 8, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the parameters describe the mapped frame (alive in
            // `source`, handed to the tensor) and a buffer of 3 * w * h
            // values of the kernel's element type (the pool's; every plan has
            // this preprocessor's spec); the tables live until after the
            // launch is queued, freed in stream order.
            unsafe {
                stream
                    .launch_builder(&self.kernel)
                    .arg(&params)
                    .launch(config)
            }
            .map_err(CudaError::driver(
                "the pre-processing kernel failed to launch",
            ))?;
            let tensor = DeviceTensor::new(buffer, gpu.clone(), Some(source.clone()))?;
            tensors.push(Tensor {
                channels: 3,
                height: h as usize,
                width: w as usize,
                storage: TensorStorage::Device(tensor),
                transform: plan.geometry.transform,
            });
        }
        Ok(tensors)
    }
}
