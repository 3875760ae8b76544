//! The CUDA device: its primary context (the one ONNX Runtime's CUDA provider
//! uses, so GStreamer is given the same one), one stream on which
//! pre-processing, inference and output decoding are ordered, and the
//! kernels its users bring, compiled once each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use cudarc::nvrtc::CompileOptions;

use super::CudaError;

/// A kernel to compile: CUDA C++ sources, compiled as one translation unit
/// in this order (shared helpers first), and the `extern "C"` function to
/// load from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelSource {
    pub sources: &'static [&'static str],
    pub name: &'static str,
}

pub struct Gpu {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// NVRTC's architecture name for this device, or why there is none.
    arch: OnceLock<Result<&'static str, CudaError>>,
    /// Every kernel asked for, compiled or why not: each is compiled once
    /// per device and process, however many elements use it.
    kernels: Mutex<HashMap<KernelSource, Result<CudaFunction, CudaError>>>,
}

/// One [`Gpu`] per device for the whole process: the primary context stays
/// retained while GStreamer objects may still refer to it. Each device has
/// its own slot, so that opening one (its primary context takes a good part
/// of a second) does not hold up the elements of another.
type Slot = Arc<Mutex<Option<Arc<Gpu>>>>;
static GPUS: Mutex<Vec<(usize, Slot)>> = Mutex::new(Vec::new());

fn slot(ordinal: usize) -> Slot {
    let mut slots = GPUS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, s)) = slots.iter().find(|(o, _)| *o == ordinal) {
        return s.clone();
    }
    let s = Slot::default();
    slots.push((ordinal, s.clone()));
    s
}

/// Whether the CUDA driver library can be loaded (cheap, no GPU work).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The process's handle on CUDA device `ordinal`. The error says what is
/// missing; callers add what the user should do instead.
pub fn gpu(ordinal: usize) -> Result<Arc<Gpu>, CudaError> {
    let slot = slot(ordinal);
    let mut opened = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = opened.as_ref() {
        return Ok(g.clone());
    }
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    let ctx = CudaContext::new(ordinal).map_err(|source| CudaError::OpenDevice {
        ordinal,
        count: CudaContext::device_count().unwrap_or(0),
        source,
    })?;
    // One stream orders all our work, and ONNX Runtime runs on it too, so
    // cudarc's per-buffer events would only add cost.
    // SAFETY: no buffer of this context exists yet.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx
        .new_stream()
        .map_err(|source| CudaError::NewStream { ordinal, source })?;
    let gpu = Arc::new(Gpu {
        ordinal,
        ctx,
        stream,
        arch: OnceLock::new(),
        kernels: Mutex::new(HashMap::new()),
    });
    *opened = Some(gpu.clone());
    Ok(gpu)
}

impl Gpu {
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The raw primary context, for GStreamer and for comparing with the
    /// context a frame's memory belongs to.
    pub fn cu_context(&self) -> usize {
        self.ctx.cu_ctx() as usize
    }

    pub fn cu_device(&self) -> i32 {
        self.ctx.cu_device()
    }

    /// The kernel `source` describes, compiled on first use.
    pub fn kernel(&self, source: KernelSource) -> Result<CudaFunction, CudaError> {
        let mut kernels = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        kernels
            .entry(source)
            .or_insert_with(|| self.compile(source))
            .clone()
    }

    fn arch(&self) -> Result<&'static str, CudaError> {
        self.arch
            .get_or_init(|| {
                // SAFETY: only tries to dlopen the library.
                if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                    return Err(CudaError::NoNvrtc);
                }
                let (major, minor) = self
                    .ctx
                    .compute_capability()
                    .map_err(CudaError::driver("cannot query the GPU"))?;
                // NVRTC wants a 'static name; one per device and process.
                Ok(Box::leak(
                    format!("compute_{major}{minor}").into_boxed_str(),
                ))
            })
            .clone()
    }

    fn compile(&self, source: KernelSource) -> Result<CudaFunction, CudaError> {
        let arch = self.arch()?;
        let name = source.name;
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(
            source.sources.concat(),
            CompileOptions {
                arch: Some(arch),
                ..Default::default()
            },
        )
        .map_err(|source| CudaError::Compile {
            kernel: name,
            source,
        })?;
        self.ctx
            .load_module(ptx)
            .and_then(|m| m.load_function(name))
            .map_err(|source| CudaError::LoadKernel {
                kernel: name,
                source,
            })
    }
}
