//! The errors of `inference/`: why a model could not be loaded
//! ([`LoadError`], with the checks' [`CheckError`] and [`LabelsError`] and
//! ONNX Runtime's [`RuntimeError`] and [`ProvidersError`]), why a frame's
//! inference failed ([`InferError`]: its tensor does not fit the model, or
//! the run of its batch failed on the host or in the GPU runner,
//! [`GpuError`]).

use std::sync::Arc;

use cudarc::driver::DriverError;

use super::MAX_INPUT_VALUES;
use crate::cuda::CudaError;
use crate::families::ShapeError;

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
    Device(#[from] GpuError),
    #[error(transparent)]
    Cuda(#[from] CudaError),
}

/// Why a model does not fit the family chosen for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FamilyMismatch {
    /// Its shapes.
    #[error(transparent)]
    Shapes(ShapeError),
    /// A value the family reads is not float32 or float16.
    #[error(transparent)]
    Element(CheckError),
}

/// Why a model could not be loaded, by what the user has to fix (the
/// element maps each kind to a GStreamer error domain).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    ModelNotFound(String),
    #[error("{0}")]
    ModelUnreadable(String),
    #[error("{0}")]
    ModelMismatch(String),
    /// The model's inputs and outputs do not fit what every family needs.
    #[error("the model '{model}' does not fit model-type={family}: {source}")]
    ModelIo {
        model: String,
        family: String,
        source: Box<CheckError>,
    },
    /// The model does not fit the family chosen for it.
    #[error(
        "the model '{model}' does not fit model-type={family}: {source}. \
         Use a model of that family or set model-type"
    )]
    Family {
        model: String,
        family: String,
        source: Box<FamilyMismatch>,
    },
    #[error("{0}")]
    Labels(String),
    #[error(transparent)]
    Runtime(RuntimeError),
    #[error(
        "cuda-graph=true with sessions={sessions}: ONNX Runtime captures and replays CUDA graphs in \
         CUDA's global capture mode, where the sessions of a pool make each other's runs fail; set \
         sessions=1 (sessions=0 is 1 with cuda-graph) or cuda-graph=false"
    )]
    GraphPool { sessions: usize },
    #[error("cannot create a CUDA stream for a session of the pool: {0}")]
    PoolStream(#[source] cudarc::driver::DriverError),
    /// The first run, made before any frame, failed.
    #[error(transparent)]
    WarmUp(GpuError),
    #[error("cannot start the batching thread: {0}")]
    Thread(#[source] Arc<std::io::Error>),
    #[error("loading the model stopped unexpectedly (a panic in the loading thread)")]
    Panicked,
}

/// Why the GPU runner could not be made or could not run a batch.
/// Cloneable (ONNX Runtime's errors behind an `Arc`): a runner that could
/// not be made answers every batch with its error, and a batch's error
/// goes to each of its frames.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// An ONNX Runtime call failed; `doing` says what it was for.
    #[error("{doing}: {source}")]
    Ort {
        doing: &'static str,
        source: Arc<ort::Error>,
    },
    #[error("cannot keep the model output '{name}' on the GPU: {source}")]
    KeepOutput {
        name: String,
        source: Arc<ort::Error>,
    },
    #[error("cannot allocate GPU memory for the model output '{name}': {source}")]
    OutputAlloc { name: String, source: DriverError },
    #[error("the model's input name contains a NUL byte")]
    InputNameNul,
    #[error("the model output name '{name}' contains a NUL byte")]
    OutputNameNul { name: String },
    #[error("cannot bind the GPU tensor: {0}")]
    BindInput(#[source] OrtStatus),
    #[error("cannot bind the model output '{name}' to GPU memory: {source}")]
    BindOutput { name: String, source: OrtStatus },
    #[error("the model gave no output '{name}'")]
    NoOutput { name: String },
    #[error("the model output '{name}' is not {element}: {source}")]
    OutputType {
        name: String,
        element: &'static str,
        source: Arc<ort::Error>,
    },
    #[error(
        "the model's output '{name}' has the shape {actual:?} at run time, which differs \
         from what it declared (expected {expected:?} for a batch of {batch}): the model \
         cannot be decoded"
    )]
    OutputShape {
        name: String,
        actual: Vec<i64>,
        expected: Vec<i64>,
        batch: usize,
    },
    #[error(
        "cuda-graph: ONNX Runtime could not capture the model's run as a CUDA graph \
         ({0}); set cuda-graph=false"
    )]
    GraphCapture(#[source] Box<GpuError>),
}

impl GpuError {
    /// A failed ONNX Runtime call made for `doing`.
    pub(super) fn ort(doing: &'static str) -> impl Fn(ort::Error) -> Self {
        move |e| Self::Ort {
            doing,
            source: Arc::new(e),
        }
    }
}

/// The message of a failed ONNX Runtime C API call (an `OrtStatus`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct OrtStatus(pub(super) String);

/// Why a labels file's bytes are not a labels file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelsError {
    /// More than [`super::MAX_LABELS_BYTES`].
    TooLarge,
    /// Not UTF-8 text; the reason.
    NotUtf8(std::str::Utf8Error),
}

/// Whether a model value is the model's input or its output, as messages
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

impl Role {
    /// What a family does with a value of this role.
    pub(super) fn verb(self) -> &'static str {
        match self {
            Role::Input => "takes",
            Role::Output => "needs",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Input => "input",
            Role::Output => "output",
        })
    }
}

/// Why a model's inputs and outputs do not fit what every family needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error(
        "the model has {count} inputs ({}) but model-type={family} takes exactly one, the image",
        .names.join(", ")
    )]
    InputCount {
        count: usize,
        names: Vec<String>,
        family: String,
    },
    #[error("the model has no output")]
    NoOutput,
    #[error(
        "the model's {role} '{name}' is {element} but model-type={family} {} float32 or float16: \
         export the model with a float32 {role}",
        .role.verb()
    )]
    ElementType {
        role: Role,
        name: String,
        element: String,
        family: String,
    },
    #[error(
        "the model's {role} '{name}' is {kind}, not a tensor: model-type={family} needs a float32 tensor"
    )]
    NotTensor {
        role: Role,
        name: String,
        kind: String,
        family: String,
    },
    #[error(
        "the model's input is {height}x{width} (height x width): at most {} on a side is supported",
        crate::spec::MAX_TENSOR_SIDE
    )]
    InputTooLarge { height: i64, width: i64 },
    #[error(
        "the model's input has {values} values per frame: at most {MAX_INPUT_VALUES} are supported"
    )]
    InputValues { values: u64 },
}

/// Why a `providers` list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvidersError {
    #[error("unknown execution provider '{0}': use a comma-separated list of tensorrt, cuda, cpu")]
    Unknown(String),
    #[error("the providers list is empty: set providers=cpu (or cuda, tensorrt)")]
    Empty,
}

/// What went wrong, by what the user has to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    Library(String),
    Model(String),
    Provider(String),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Library(m) | RuntimeError::Model(m) | RuntimeError::Provider(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for RuntimeError {}
