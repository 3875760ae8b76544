//! The GPU half of the family contract: a family's decoding kernel
//! ([`GpuDecoder`]) writes its candidates through the shared helpers of
//! `candidates.cu` ([`CANDIDATES_CUDA`]) into [`CandidateTargets`]; the
//! runner in `inference/` owns the buffers, the launches and the copies.

use cudarc::driver::{CudaFunction, CudaStream, DeviceRepr, DriverError, LaunchConfig};

use crate::cuda::device::KernelSource;

/// The candidate helpers every decoding kernel is compiled with: a
/// family's [`KernelSource`] lists this first, then its own source.
pub const CANDIDATES_CUDA: &str = include_str!("candidates.cu");

/// Floats per candidate record (`CANDIDATE_RECORD` in candidates.cu).
pub const RECORD: usize = 8;

/// Confidence bins of the per-image histograms (`CANDIDATE_BINS` in
/// candidates.cu): bin b holds b / BINS <= confidence < (b + 1) / BINS.
pub const BINS: usize = 2048;

/// Where a decoding kernel writes its candidates, passed to it by value.
/// Mirrors `CandidateTargets` in candidates.cu (pointers as u64).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CandidateTargets {
    pub thresholds: u64,
    pub records: u64,
    pub counts: u64,
    pub histograms: u64,
    pub capacity: u32,
}

// SAFETY: plain old data with the C layout the kernels expect.
unsafe impl DeviceRepr for CandidateTargets {}
// The C struct: four 8-byte pointers and a u32, padded to 8 bytes.
const _: () = assert!(std::mem::size_of::<CandidateTargets>() == 40);

/// A model family's output decoding on the GPU.
///
/// Its kernel runs one thread per output position of each image (the
/// launch configuration given to [`GpuDecoder::launch`]: x covers the
/// positions, y the images) and writes, through the helpers of
/// [`CANDIDATES_CUDA`], one record per (position, class) whose confidence
/// is above its image's threshold, with the box in tensor pixels: the same
/// candidates, with the same arithmetic, as the family's host decoder. It
/// reads the outputs the family names ([`super::Family::outputs`]),
/// each bound on the GPU, whose shapes the runner checks every run.
pub trait GpuDecoder: Send {
    /// The kernel, [`CANDIDATES_CUDA`] first among its sources.
    fn kernel(&self) -> KernelSource;
    /// Output positions (anchors) of one image: one thread each.
    fn positions(&self) -> usize;
    /// The most candidates one image can give (every position and class).
    fn max_candidates(&self) -> usize;
    /// Queues `kernel` (compiled from [`Self::kernel`]) on `stream` with
    /// `config` over the outputs at device addresses `outputs` (in the
    /// family's order ([`super::Family::outputs`])).
    ///
    /// # Safety
    /// Each of `outputs` holds `config.grid_dim.1` images of its
    /// [`OutputUse::dims`] floats on `stream`'s device until the kernel is
    /// done, and `targets` describes buffers of that many images.
    unsafe fn launch(
        &self,
        stream: &CudaStream,
        kernel: &CudaFunction,
        config: LaunchConfig,
        outputs: &[u64],
        targets: CandidateTargets,
    ) -> Result<(), DriverError>;
}

