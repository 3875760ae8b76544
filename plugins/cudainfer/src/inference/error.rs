//! Why a frame's inference failed: its tensor does not fit the model, or
//! the run of its batch failed (on the host or in the device runner).

use std::sync::Arc;

use super::device::DeviceError;
use crate::cuda::CudaError;

/// Cloneable (ONNX Runtime's errors behind an `Arc`): a failed batch's
/// error goes to every frame of it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferError {
    #[error(
        "the tensor is {channels}x{height}x{width} but the model wants 3x{model_height}x{model_width}: \
         remove the width/height overrides of cudapreprocess"
    )]
    TensorSize {
        channels: usize,
        height: usize,
        width: usize,
        model_height: u32,
        model_width: u32,
    },
    #[error(
        "the tensor is on GPU {tensor} but trtinfer runs on GPU {ours}: set trtinfer device-id \
         to cudapreprocess's device-id"
    )]
    TensorGpu { tensor: usize, ours: usize },
    #[error(
        "the tensor on the GPU is {tensor} but the model takes {model}: let cudapreprocess \
         ask trtinfer for the model's input (link them directly)"
    )]
    TensorElement {
        tensor: &'static str,
        model: &'static str,
    },
    #[error(
        "the tensor holds {held} values but its shape {channels}x{height}x{width} needs {needed}: \
         the element that attached it is broken"
    )]
    TensorLength {
        held: usize,
        channels: usize,
        height: usize,
        width: usize,
        needed: usize,
    },
    #[error(
        "cuda-graph=true replays a graph captured on GPU tensors, but the frame's \
         tensor is in host memory: feed CUDA frames (nvh264dec ! cudapreprocess) or \
         set cuda-graph=false"
    )]
    GraphNeedsDeviceTensor,
    #[error("cannot make the model's input tensor: {0}")]
    InputTensor(#[source] Arc<ort::Error>),
    #[error("inference failed: {0}")]
    Run(#[source] Arc<ort::Error>),
    #[error("the model output is not {element}: {source}")]
    OutputType {
        element: &'static str,
        source: Arc<ort::Error>,
    },
    #[error("the model output is too short")]
    OutputTooShort,
    /// The worker thread went before answering (the element is stopping).
    #[error("the batching thread stopped")]
    BatcherStopped,
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Cuda(#[from] CudaError),
}
