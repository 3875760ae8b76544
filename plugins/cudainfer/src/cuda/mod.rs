//! Everything CUDA: the device shared by our elements and ONNX Runtime
//! ([`device`]), GStreamer's CUDA library ([`gst_cuda`]), device tensors and
//! their pool ([`tensor`]), the decoder element of each GPU and streams
//! spread over GPUs ([`placement`]), and the kernels, compiled at run time
//! with NVRTC.
//!
//! Nothing here panics when there is no GPU: cudarc is only touched after
//! [`device::gpu`] has checked that the driver library exists.

pub mod device;
pub mod error;
pub mod gst_cuda;
pub mod placement;
pub mod tensor;

pub use device::{gpu, Gpu};
pub use error::CudaError;
pub use tensor::{DeviceTensor, TensorPool};
