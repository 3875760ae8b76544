//! cudapreprocess's own errors, on top of the layers' below it; the element
//! posts each with its GStreamer domain where it happens (caps, frames).

use crate::cuda::CudaError;
use crate::preprocess::PreprocessError;

/// Properties and the model's input spec that cannot make a tensor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum SettingsError {
    #[error(
        "cudapreprocess does not know the model's input size: link it to a trtinfer \
         that has a model (cudapreprocess ! trtinfer model=...), or set its width and height"
    )]
    UnknownSize,
    #[error("mean and std take 1 or 3 values, got {0}")]
    ValueCount(usize),
    #[error(
        "cudapreprocess cannot make a {width}x{height} tensor (width x height): at most {} \
         on a side. Leave width and height unset to take the model's size",
        crate::spec::MAX_TENSOR_SIDE
    )]
    TooLarge { width: u32, height: u32 },
    #[error(
        "cudapreprocess width/height make a {width}x{height} tensor but the model downstream \
         wants {model_width}x{model_height} (width x height): leave width and height unset or set them to the model's"
    )]
    NotModelSize {
        width: u32,
        height: u32,
        model_width: u32,
        model_height: u32,
    },
    #[error(
        "cudapreprocess mean and std must be finite numbers, got mean {mean:?} and std {std:?}"
    )]
    NotFinite { mean: [f32; 3], std: [f32; 3] },
    #[error(
        "cudapreprocess std must be at least {min:e} in magnitude (a tinier divisor overflows \
         the tensor), got {std:?}"
    )]
    TinyStd { std: [f32; 3], min: f32 },
}

/// Why CUDA-memory input cannot be taken (at caps).
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum CudaInputError {
    #[error(
        "cudapreprocess cannot use CUDA memory on CUDA device {device_id} (device-id): {source}. \
         Without a GPU, decode to system memory (for example avdec_h264 ! videoconvert) \
         before cudapreprocess"
    )]
    NoGpu { device_id: u32, source: CudaError },
    #[error(
        "{decoder} upstream decodes on CUDA device {other}, but cudapreprocess device-id is \
         {device_id}: set device-id={other} (and trtinfer device-id={other}), or use the \
         decoder of device {device_id} ({ours})"
    )]
    UpstreamDevice {
        decoder: String,
        other: u32,
        device_id: u32,
        ours: String,
    },
    #[error(transparent)]
    Cuda(#[from] CudaError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
}

/// Why a frame could not be made into tensors.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum FrameError {
    #[error(
        "cudapreprocess mode=objects crops the objects a detector found, but the frame \
         carries no detections: put a trtinfer detector before it (... ! cudapreprocess ! \
         trtinfer model=detector.onnx ! cudapreprocess mode=objects ! trtinfer \
         model=classifier.onnx model-type=classifier ! ...)"
    )]
    NoDetections,
    #[error("cannot map the video frame for reading")]
    Map,
    #[error(transparent)]
    Cuda(#[from] CudaError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
}
