//! The model input `cudapreprocess` makes from a frame (or an object's
//! crop) and `trtinfer` runs: NCHW values on the host or the GPU, with the
//! map back to the frame's pixels.

use std::sync::Arc;

/// Affine map between frame pixels and tensor pixels:
/// `tensor = frame * scale + offset`, per axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameTransform {
    pub scale_x: f32,
    pub scale_y: f32,
    pub offset_x: f32,
    pub offset_y: f32,
    pub frame_width: u32,
    pub frame_height: u32,
}

impl FrameTransform {
    /// Maps a tensor-space point back to frame pixels.
    pub fn to_frame(self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.offset_x) / self.scale_x,
            (y - self.offset_y) / self.scale_y,
        )
    }
}

/// Where the tensor's values live.
#[derive(Debug)]
pub enum TensorStorage {
    /// Host memory, used for system-memory video.
    Host(Vec<f32>),
    /// GPU memory, used for CUDA-memory video.
    Device(crate::cuda::DeviceTensor),
}

/// One model-ready input tensor, NCHW with N = 1: float32 on the host; on
/// the GPU of the model's element type (float16 for an fp16 model).
#[derive(Debug)]
pub struct Tensor {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub storage: TensorStorage,
    pub transform: FrameTransform,
}

impl Tensor {
    pub fn shape(&self) -> [usize; 4] {
        [1, self.channels, self.height, self.width]
    }

    /// The values in host memory as float32, copied (and converted) from
    /// the GPU where they are there.
    pub fn to_host(&self) -> Result<std::borrow::Cow<'_, [f32]>, crate::cuda::CudaError> {
        match &self.storage {
            TensorStorage::Host(v) => Ok(v.as_slice().into()),
            TensorStorage::Device(d) => d.download().map(Into::into),
        }
    }
}

/// One object's crop as a model input (`cudapreprocess mode=objects`).
#[derive(Debug)]
pub struct ObjectTensor {
    /// Index of the object in the frame's `FrameDetections::detections`.
    pub object: usize,
    pub tensor: Arc<Tensor>,
}
