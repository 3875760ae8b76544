//! Why CUDA work failed, for every module of [`crate::cuda`]: cudarc's
//! driver and NVRTC errors and libloading's are kept as sources, so the
//! message is formatted once, here, and callers can still look below it.

use std::sync::Arc;

use cudarc::driver::DriverError;
use cudarc::nvrtc::CompileError;

use super::gst_cuda::LIBRARY_NAME;

/// Cloneable, as a device caches a failed kernel compilation and a pool's
/// failed batch reaches every frame of it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CudaError {
    #[error("there is no CUDA driver on this machine (libcuda.so.1 not found)")]
    NoDriver,
    #[error(
        "CUDA device {ordinal} cannot be opened ({source}); this machine has {count} CUDA device(s)"
    )]
    OpenDevice {
        ordinal: usize,
        count: i32,
        source: DriverError,
    },
    #[error("cannot create a CUDA stream on device {ordinal}: {source}")]
    NewStream { ordinal: usize, source: DriverError },
    #[error(
        "the CUDA runtime compiler NVRTC (libnvrtc.so) is not installed; \
         install CUDA's nvrtc library (package cuda-nvrtc) so the kernels can be compiled"
    )]
    NoNvrtc,
    #[error("NVRTC cannot compile the {kernel} kernel: {source}")]
    Compile {
        kernel: &'static str,
        source: CompileError,
    },
    #[error("cannot load the {kernel} kernel: {source}")]
    LoadKernel {
        kernel: &'static str,
        source: DriverError,
    },
    #[error("cannot allocate {bytes} bytes of GPU memory: {source}")]
    Alloc { bytes: usize, source: DriverError },
    /// Any other driver call; `doing` says what it was for.
    #[error("{doing}: {source}")]
    Driver {
        doing: &'static str,
        source: DriverError,
    },
    #[error(
        "GStreamer's CUDA library {LIBRARY_NAME} is missing ({source}): install gst-plugins-bad 1.22 or later"
    )]
    GstLibraryMissing { source: Arc<libloading::Error> },
    #[error("{LIBRARY_NAME} lacks {symbol}: {source}")]
    GstSymbolMissing {
        symbol: &'static str,
        source: Arc<libloading::Error>,
    },
    #[error("{LIBRARY_NAME} cannot load the CUDA driver")]
    GstNoDriver,
    #[error("GStreamer cannot wrap the CUDA primary context")]
    WrapContext,
    #[error("cannot wait for a frame's CUDA stream from another CUDA context")]
    ForeignProducer,
    #[error(
        "the frame has {blocks} memory blocks; CUDA frames come as one (as nvh264dec makes them)"
    )]
    MemoryBlocks { blocks: usize },
    #[error("the caps say memory:CUDAMemory but the frame is not in CUDA memory")]
    NotCudaMemory,
    #[error("cannot map the CUDA memory of the frame")]
    Map,
    #[error("cannot map the CUDA memory of the frame for writing")]
    MapWritable,
    #[error("the frame's memory, copied for writing, is not CUDA memory")]
    CopyNotCudaMemory,
    #[error("the frame's layout does not match its caps")]
    Layout,
    #[error(
        "the frame's plane {plane} has a stride of {stride} bytes but its rows are {row_bytes} bytes: \
         the upstream element's video meta does not match its CUDA memory"
    )]
    PlaneStride {
        plane: usize,
        stride: i32,
        row_bytes: u64,
    },
    #[error(
        "the frame's plane {plane} needs {needed} bytes at offset {offset} but its memory holds {size}: \
         the upstream element's video meta does not match its CUDA memory"
    )]
    PlaneSize {
        plane: usize,
        needed: u64,
        offset: u64,
        size: u64,
    },
}

impl CudaError {
    /// A failed driver call made for `doing`.
    pub fn driver(doing: &'static str) -> impl Fn(DriverError) -> Self + Copy {
        move |source| Self::Driver { doing, source }
    }

    /// A failed allocation of the buffers output decoding works in (the
    /// device runner's and each family's kernel's).
    pub fn decode_alloc() -> impl Fn(DriverError) -> Self + Copy {
        Self::driver("cannot allocate GPU memory for output decoding")
    }
}
