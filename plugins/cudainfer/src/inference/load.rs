//! Loading a model: the files checked before anything opens them, the
//! session created on the providers asked for, the model's inputs and
//! outputs checked against its family, and the GPU runner made before any
//! frame.

use std::path::{Path, PathBuf};

use ort::value::{TensorElementType, ValueType};

use super::checks::{self, LabelsError, ModelValue, Role, ValueKind};
use super::error::{FamilyMismatch, GpuError, LoadError};
use super::gpu::GpuRunner;
use super::runtime::{self, CudaOptions, Provider, ProviderOptions, RuntimeError, TensorRtOptions};
use super::{node_placement, Model};
use crate::cuda;
use crate::families::{self, FamilyOptions, ModelType};
use crate::spec::InputSpec;

/// What a detector is made from (the element's settings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelConfig {
    pub model: PathBuf,
    pub model_type: ModelType,
    /// The family's own settings (see [`FamilyOptions`]).
    pub family: FamilyOptions,
    pub labels: Option<PathBuf>,
    pub providers: Vec<Provider>,
    pub device_id: i32,
    pub ort_library: Option<PathBuf>,
    pub cuda: CudaOptions,
    pub tensorrt: TensorRtOptions,
}

/// Largest labels file read: a class list is a few KiB, so a bigger file is
/// the wrong file (and a reader of one must not grow without bound).
pub const MAX_LABELS_BYTES: u64 = 1 << 20;
/// Largest model file: protobuf caps an ONNX file at 2 GiB (bigger models
/// keep their weights as external data beside it).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;
/// Most values one frame's input tensor may have (256 MB of float32): far
/// above any detector's, below what makes a mistyped export eat the host.
pub const MAX_INPUT_VALUES: u64 = 64 << 20;

/// Checks that `path` is a regular file of at most `max_bytes` that we may
/// read, before anything opens it: opening a FIFO blocks until a writer
/// comes, and a device such as /dev/zero never ends.
fn check_readable(
    path: &Path,
    what: &str,
    property: &str,
    max_bytes: u64,
) -> Result<std::fs::File, LoadError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LoadError::ModelNotFound(format!(
            "the {what} '{shown}' does not exist: set {property} to an existing file"
        )),
        _ => LoadError::ModelUnreadable(format!(
            "cannot read the {what} '{shown}': {e}. Check the file's permissions"
        )),
    })?;
    if meta.is_dir() {
        return Err(LoadError::ModelUnreadable(format!(
            "the {what} '{shown}' is a directory: set {property} to a file"
        )));
    }
    if !meta.is_file() {
        return Err(LoadError::ModelUnreadable(format!(
            "the {what} '{shown}' is not a regular file (it is a FIFO, socket or device): \
             set {property} to a regular file"
        )));
    }
    if meta.len() > max_bytes {
        return Err(LoadError::ModelUnreadable(format!(
            "the {what} '{shown}' is larger than {}: set {property} to the right file",
            byte_size(max_bytes)
        )));
    }
    std::fs::File::open(path).map_err(|e| {
        LoadError::ModelUnreadable(format!(
            "cannot read the {what} '{shown}': {e}. Check the file's permissions"
        ))
    })
}

fn byte_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// Reads the labels file: one name per line, in class-id order (see
/// [`checks::parse_labels`]).
fn read_labels(path: &Path) -> Result<Vec<String>, LoadError> {
    use std::io::Read;
    let as_labels_error = |e| match e {
        LoadError::ModelNotFound(m) | LoadError::ModelUnreadable(m) => LoadError::Labels(m),
        other => other,
    };
    let file = check_readable(path, "labels file", "the labels property", MAX_LABELS_BYTES)
        .map_err(as_labels_error)?;
    let unreadable = |e: &dyn std::fmt::Display| {
        LoadError::Labels(format!(
            "cannot read the labels file '{}': {e}. It must be UTF-8 text, one name per line",
            path.display()
        ))
    };
    // Bounded even where the size said nothing (a /proc file reads as 0).
    let mut bytes = Vec::new();
    file.take(MAX_LABELS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(&e))?;
    checks::parse_labels(&bytes).map_err(|e| match e {
        LabelsError::TooLarge => LoadError::Labels(format!(
            "the labels file '{}' is larger than {}: set the labels property to the right file",
            path.display(),
            byte_size(MAX_LABELS_BYTES)
        )),
        LabelsError::NotUtf8(e) => unreadable(&e),
    })
}

/// ONNX's name of an element type, as export tools print it.
fn element_type_name(ty: TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "float32".into(),
        TensorElementType::Float16 => "float16".into(),
        TensorElementType::Bfloat16 => "bfloat16".into(),
        TensorElementType::Float64 => "float64".into(),
        TensorElementType::Uint8 => "uint8".into(),
        TensorElementType::Int8 => "int8".into(),
        TensorElementType::Int32 => "int32".into(),
        TensorElementType::Int64 => "int64".into(),
        other => other.to_string(),
    }
}

/// How ONNX Runtime describes one of the session's inputs or outputs, as
/// plain data for [`checks::check_model_io`].
fn model_value(outlet: &ort::value::Outlet) -> ModelValue {
    let kind = match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => ValueKind::Tensor {
            element: element_type_name(*ty),
            shape: shape.to_vec(),
        },
        other => ValueKind::Other(other.to_string()),
    };
    ModelValue {
        name: outlet.name().to_string(),
        kind,
    }
}

/// Which CUDA stream a session runs on (GPU providers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStream {
    /// The GPU's shared stream, where pre-processing runs: ordered with it
    /// without any wait.
    Shared,
    /// A stream of its own, so that sessions of a pool run at the same time;
    /// each run waits (on the GPU) for its input tensors.
    Own,
}

impl Model {
    /// Loads the model with its GPU work on `stream`; `warn` receives
    /// non-fatal problems (a provider that was skipped, a short label file).
    pub fn load_on(
        config: &ModelConfig,
        stream: SessionStream,
        mut warn: impl FnMut(&str),
    ) -> Result<Self, LoadError> {
        let model_file = check_readable(
            &config.model,
            "model file",
            "the model property",
            MAX_MODEL_BYTES,
        )?;
        if model_file.metadata().is_ok_and(|m| m.len() == 0) {
            return Err(LoadError::ModelUnreadable(format!(
                "the model file '{}' is empty: set the model property to an ONNX file",
                config.model.display()
            )));
        }
        drop(model_file);
        let labels = match &config.labels {
            Some(path) => read_labels(path)?,
            None => Vec::new(),
        };
        let family_name = config.model_type.nick();

        let library = runtime::resolve_library(config.ort_library.as_deref());
        let env = runtime::environment(&library).map_err(LoadError::Runtime)?;
        // GPU providers run on our stream, so that pre-processing, inference
        // and decoding are ordered on the GPU without host waits. Without a
        // CUDA driver there is no stream and ONNX Runtime reports the problem.
        let wants_gpu = config.providers.iter().any(|p| *p != Provider::Cpu);
        let gpu = wants_gpu
            .then(|| cuda::gpu(config.device_id.max(0) as usize).ok())
            .flatten();
        let gpu_stream = match (&gpu, stream) {
            (None, _) => None,
            (Some(g), SessionStream::Shared) => Some(g.stream().clone()),
            (Some(g), SessionStream::Own) => Some(
                g.stream()
                    .context()
                    .new_stream()
                    .map_err(LoadError::PoolStream)?,
            ),
        };
        let options = ProviderOptions {
            device_id: config.device_id,
            compute_stream: gpu_stream.as_ref().map(|s| s.cu_stream() as usize),
            cuda: config.cuda.clone(),
            tensorrt: config.tensorrt.clone(),
            log_placements: false,
        };
        let created = runtime::create_session(&env, &config.model, &config.providers, &options)
            .map_err(|e| match e {
                RuntimeError::Model(m) => LoadError::ModelUnreadable(m),
                other => LoadError::Runtime(other),
            })?;
        let (session, active_provider) = (created.session, created.provider);
        for s in &created.skipped {
            warn(s);
        }
        if let Some(w) = created
            .placements
            .as_ref()
            .filter(|_| active_provider != Provider::Cpu)
            .and_then(|p| node_placement::cpu_fallback_warning(p, active_provider.name()))
        {
            warn(&w);
        }

        let inputs: Vec<ModelValue> = session.inputs().iter().map(model_value).collect();
        let outputs: Vec<ModelValue> = session.outputs().iter().map(model_value).collect();
        let model = || config.model.display().to_string();
        checks::check_model_io(&inputs, &outputs, family_name).map_err(|source| {
            LoadError::ModelIo {
                model: model(),
                family: family_name.to_owned(),
                source: Box::new(source),
            }
        })?;
        let input = &inputs[0];
        let input_name = input.name.clone();
        let max_batch = match input.tensor_shape().and_then(|s| s.first().copied()) {
            Some(n) if n > 0 => n as usize,
            _ => usize::MAX,
        };
        let (Some(input_shape), Some(_)) = (input.tensor_shape(), outputs[0].tensor_shape()) else {
            return Err(LoadError::ModelMismatch(format!(
                "the model '{}' does not take and return tensors",
                config.model.display()
            )));
        };
        let shapes = checks::model_shapes(input_shape, &outputs);
        let mismatch = |source| LoadError::Family {
            model: model(),
            family: family_name.to_owned(),
            source: Box::new(source),
        };
        let family = families::new_family(config.model_type, &shapes, &config.family)
            .map_err(|e| mismatch(FamilyMismatch::Shapes(e)))?;
        // The outputs a family reads besides the first (checked above) are
        // float32 or float16 too.
        let output_elements = family
            .outputs()
            .iter()
            .map(|used| checks::tensor_element(&outputs[used.index], Role::Output, family_name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| mismatch(FamilyMismatch::Element(e)))?;
        let input_spec = InputSpec {
            element_type: checks::tensor_element(input, Role::Input, family_name)
                .map_err(|e| mismatch(FamilyMismatch::Element(e)))?,
            ..family.input_spec().clone()
        };
        if !labels.is_empty() && labels.len() != family.num_classes() {
            warn(&format!(
                "the labels file has {} names but the model predicts {} classes; unnamed classes are called class-<id>",
                labels.len(),
                family.num_classes()
            ));
        }
        let gpu = gpu.filter(|_| active_provider != Provider::Cpu);
        let gpu_runner = gpu
            .as_ref()
            .zip(gpu_stream.clone())
            .and_then(|(gpu, stream)| {
                family.gpu_decoder(gpu).map(|decoder| {
                    decoder.map_err(GpuError::from).and_then(|d| {
                        GpuRunner::new(
                            (gpu.clone(), stream),
                            &session,
                            (&input_name, input_spec.element_type),
                            &family.outputs(),
                            &output_elements,
                            d,
                            config.cuda.cuda_graph && active_provider == Provider::Cuda,
                        )
                    })
                })
            });
        // A captured graph needs the device runner's fixed buffers; other
        // runs would be captured with addresses that change.
        if config.cuda.cuda_graph
            && active_provider == Provider::Cuda
            && !matches!(gpu_runner, Some(Ok(_)))
        {
            return Err(LoadError::ModelMismatch(format!(
                "cuda-graph=true needs a model family decoded on the GPU ({}); \
                 model-type={family_name} is decoded on the host: set cuda-graph=false",
                families::gpu_decoded_families()
            )));
        }
        Ok(Self {
            session,
            input_name,
            family,
            input_spec,
            output_elements,
            labels,
            active_provider,
            library,
            model_name: config.model.display().to_string(),
            gpu,
            _stream: gpu_stream,
            gpu_runner,
            max_batch,
        })
    }
}
