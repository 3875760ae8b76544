//! Running a detection model on preprocessed tensors: model loading and
//! validation, ONNX Runtime execution, decoding, NMS and mapping back to
//! frame pixels. Independent of any element, so several elements (or a
//! batcher) can drive it.

pub mod batcher;
pub(crate) mod checks;
pub mod device;
mod error;
pub mod placement;
pub mod runtime;

pub use checks::{CheckError, Role};
pub use error::InferError;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::Session;
use ort::value::{DynTensor, TensorElementType, ValueType};

use crate::cuda::{self, DeviceTensor, Gpu};
use crate::detections::{Classification, Detection, FrameDetections};
use crate::parsers::{
    self, nms, DecodeLimits, FamilyOptions, FrameResult, ModelType, OutputParser, ShapeError,
};
use crate::spec::{ElementType, InputSpec};
use crate::tensor::{Tensor, TensorStorage};
use checks::{LabelsError, ModelValue, ValueKind};
use device::{DeviceError, DeviceRunner};
use runtime::{CudaOptions, Provider, ProviderOptions, RuntimeError, TensorRtOptions};

/// What a detector is made from (the element's settings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DetectorConfig {
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

/// What one frame keeps of the model's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Candidates whose confidence is above this...
    pub confidence: f32,
    /// ...at most this many, the most confident (before NMS, so that a low
    /// threshold cannot make NMS unbounded)...
    pub max_detections: usize,
    /// ...and class-wise NMS drops a box overlapping a better one of its
    /// class by more than this IoU.
    pub nms: f32,
}

/// Whether two tensors can share one model run: same shape, same memory,
/// same GPU.
pub fn same_memory(a: &Tensor, b: &Tensor) -> bool {
    let gpu = |t: &Tensor| match &t.storage {
        TensorStorage::Device(d) => Some(d.gpu().ordinal()),
        TensorStorage::Host(_) => None,
    };
    a.shape() == b.shape() && gpu(a) == gpu(b)
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

/// Why a detector could not be made, by what the user has to fix (the
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
    WarmUp(DeviceError),
    #[error("cannot start the batching thread: {0}")]
    Thread(#[source] Arc<std::io::Error>),
    #[error("loading the model stopped unexpectedly (a panic in the loading thread)")]
    Panicked,
}

pub struct Detector {
    session: Session,
    input_name: String,
    parser: Box<dyn OutputParser>,
    /// The family's preset with the model input's element type.
    input_spec: InputSpec,
    /// The element type of each output the parser reads, in its order.
    output_elements: Vec<ElementType>,
    labels: Vec<String>,
    active_provider: Provider,
    library: PathBuf,
    model_name: String,
    /// The GPU the session runs on (cuda and tensorrt providers).
    gpu: Option<Arc<Gpu>>,
    /// Runs GPU tensors on GPU providers; made at load, before any frame
    /// (the error says why GPU tensors cannot be run).
    device_runner: Option<Result<DeviceRunner, DeviceError>>,
    /// The session's compute stream: it must outlive the session.
    _stream: Option<Arc<cudarc::driver::CudaStream>>,
    max_batch: usize,
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

impl Detector {
    /// Loads the model on the GPU's shared stream; `warn` receives
    /// non-fatal problems (a provider that was skipped, a short label file).
    pub fn load(config: &DetectorConfig, warn: impl FnMut(&str)) -> Result<Self, LoadError> {
        Self::load_on(config, SessionStream::Shared, warn)
    }

    /// Loads the model with its GPU work on `stream`.
    pub fn load_on(
        config: &DetectorConfig,
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
        let family = config.model_type;
        let family_name = glib::EnumValue::from_value(&glib::Value::from(family))
            .map(|(_, v)| v.nick())
            .unwrap_or("?");

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
            .and_then(|p| placement::cpu_fallback_warning(p, active_provider.name()))
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
        let parser = parsers::new_parser(family, &shapes, &config.family)
            .map_err(|e| mismatch(FamilyMismatch::Shapes(e)))?;
        // The outputs a family reads besides the first (checked above) are
        // float32 or float16 too.
        let output_elements = parser
            .outputs()
            .iter()
            .map(|used| checks::tensor_element(&outputs[used.index], Role::Output, family_name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| mismatch(FamilyMismatch::Element(e)))?;
        let input_spec = InputSpec {
            element_type: checks::tensor_element(input, Role::Input, family_name)
                .map_err(|e| mismatch(FamilyMismatch::Element(e)))?,
            ..parser.input_spec().clone()
        };
        if !labels.is_empty() && labels.len() != parser.num_classes() {
            warn(&format!(
                "the labels file has {} names but the model predicts {} classes; unnamed classes are called class-<id>",
                labels.len(),
                parser.num_classes()
            ));
        }
        let gpu = gpu.filter(|_| active_provider != Provider::Cpu);
        let device_runner = gpu
            .as_ref()
            .zip(gpu_stream.clone())
            .and_then(|(gpu, stream)| {
                parser.device_decoder(gpu).map(|decoder| {
                    decoder.map_err(DeviceError::from).and_then(|d| {
                        DeviceRunner::new(
                            (gpu.clone(), stream),
                            &session,
                            (&input_name, input_spec.element_type),
                            &parser.outputs(),
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
            && !matches!(device_runner, Some(Ok(_)))
        {
            return Err(LoadError::ModelMismatch(format!(
                "cuda-graph=true needs a model family decoded on the GPU (yolox, yolov8, ssd); \
                 model-type={family_name} is decoded on the host: set cuda-graph=false"
            )));
        }
        Ok(Self {
            session,
            input_name,
            parser,
            input_spec,
            output_elements,
            labels,
            active_provider,
            library,
            model_name: config.model.display().to_string(),
            gpu,
            _stream: gpu_stream,
            device_runner,
            max_batch,
        })
    }

    pub fn input_spec(&self) -> &InputSpec {
        &self.input_spec
    }

    pub fn active_provider(&self) -> Provider {
        self.active_provider
    }

    /// The ONNX Runtime library the session runs on.
    pub fn library(&self) -> &Path {
        &self.library
    }

    fn label(&self, class_id: u32) -> String {
        self.labels
            .get(class_id as usize)
            .filter(|l| !l.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("class-{class_id}"))
    }

    /// Most frames the model takes in one run: N for a fixed batch
    /// dimension N, else unbounded.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The batch size every run must have, for a fixed batch dimension.
    fn fixed_batch(&self) -> Option<usize> {
        (self.max_batch != usize::MAX).then_some(self.max_batch)
    }

    /// Fixes GPU inference at batches of `max_batch` (padded) and runs it
    /// once, so that no frame pays for the set-up. Nothing to do on the host
    /// path, where a run costs what its frames cost.
    /// Whether the session replays a captured CUDA graph.
    fn cuda_graph(&self) -> bool {
        matches!(&self.device_runner, Some(Ok(r)) if r.cuda_graph())
    }

    pub fn warm_up(&mut self, max_batch: usize) -> Result<(), DeviceError> {
        let Some(Ok(runner)) = &mut self.device_runner else {
            return Ok(());
        };
        let spec = &self.input_spec;
        let item_shape = [1, 3, spec.height as usize, spec.width as usize];
        runner.warm_up(&mut self.session, item_shape, max_batch)
    }

    fn check_tensor(&self, tensor: &Tensor) -> Result<(), InferError> {
        let spec = &self.input_spec;
        if (tensor.width, tensor.height) != (spec.width as usize, spec.height as usize)
            || tensor.channels != 3
        {
            return Err(InferError::TensorSize {
                channels: tensor.channels,
                height: tensor.height,
                width: tensor.width,
                model_height: spec.height,
                model_width: spec.width,
            });
        }
        let needed = tensor.channels * tensor.height * tensor.width;
        let held = match &tensor.storage {
            TensorStorage::Host(values) => values.len(),
            TensorStorage::Device(d) => {
                if let Some(gpu) = self
                    .gpu
                    .as_ref()
                    .filter(|g| g.ordinal() != d.gpu().ordinal())
                {
                    return Err(InferError::TensorGpu {
                        tensor: d.gpu().ordinal(),
                        ours: gpu.ordinal(),
                    });
                }
                // Host tensors are float32 whatever the model takes (the
                // conversion happens at the session); GPU tensors are fed
                // to the model as they are.
                if d.element_type() != spec.element_type {
                    return Err(InferError::TensorElement {
                        tensor: d.element_type().name(),
                        model: spec.element_type.name(),
                    });
                }
                d.len()
            }
        };
        if held != needed {
            return Err(InferError::TensorLength {
                held,
                channels: tensor.channels,
                height: tensor.height,
                width: tensor.width,
                needed,
            });
        }
        Ok(())
    }

    /// Runs the model once on `tensors` (all in the same memory, at most
    /// [`Self::max_batch`]) and decodes each item's output with its own
    /// limits (threshold, then the most confident): on the GPU for GPU
    /// tensors, a GPU provider and a family with a device decoder, else on
    /// the host (GPU tensors are then copied to the host).
    fn decode_run(
        &mut self,
        tensors: &[&Tensor],
        limits: &[DecodeLimits],
    ) -> Result<Vec<FrameResult>, InferError> {
        let device_tensors: Option<Vec<&DeviceTensor>> = tensors
            .iter()
            .map(|t| match &t.storage {
                TensorStorage::Device(d) => Some(d),
                TensorStorage::Host(_) => None,
            })
            .collect();
        // Each tensor's GPU was checked against ours (check_tensor).
        if let (Some(devices), Some(_)) = (&device_tensors, &self.gpu) {
            if let Some(runner) = &mut self.device_runner {
                let runner = runner.as_mut().map_err(|e| e.clone())?;
                let all = runner.run(&mut self.session, devices, tensors[0].shape(), limits)?;
                return Ok(all.into_iter().map(FrameResult::Candidates).collect());
            }
        }
        if self.cuda_graph() {
            return Err(InferError::GraphNeedsDeviceTensor);
        }
        let item_len: usize = tensors[0].shape().iter().product();
        let mut data = Vec::with_capacity(item_len * tensors.len());
        for t in tensors {
            data.extend_from_slice(&t.to_host()?);
        }
        let mut shape = tensors[0].shape();
        // A fixed batch dimension takes exactly its size: pad with zero
        // items, whose outputs are not decoded (as on the GPU).
        shape[0] = self.fixed_batch().unwrap_or(tensors.len());
        data.resize(item_len * shape[0], 0.0);
        let input: DynTensor = match self.input_spec.element_type {
            ElementType::Float32 => {
                ort::value::Tensor::from_array((shape, data)).map(|t| t.upcast())
            }
            ElementType::Float16 => {
                let half: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
                ort::value::Tensor::from_array((shape, half)).map(|t| t.upcast())
            }
        }
        .map_err(|e| InferError::InputTensor(Arc::new(e)))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(|e| InferError::Run(Arc::new(e)))?;
        // Each output the family reads, with one image's length in it.
        // Float16 outputs are converted, so families decode float32 alone.
        let mut decoded: Vec<(std::borrow::Cow<'_, [f32]>, usize)> = Vec::new();
        for (used, element) in self.parser.outputs().iter().zip(&self.output_elements) {
            let value = &outputs[used.index];
            let raw: std::borrow::Cow<'_, [f32]> = match element {
                ElementType::Float32 => value.try_extract_tensor::<f32>().map(|(_, r)| r.into()),
                ElementType::Float16 => value
                    .try_extract_tensor::<half::f16>()
                    .map(|(_, r)| r.iter().map(|v| v.to_f32()).collect::<Vec<_>>().into()),
            }
            .map_err(|e| InferError::OutputType {
                element: element.name(),
                source: Arc::new(e),
            })?;
            if raw.len() < used.values() * tensors.len() {
                return Err(InferError::OutputTooShort);
            }
            decoded.push((raw, used.values()));
        }
        Ok(limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let item: Vec<&[f32]> = decoded
                    .iter()
                    .map(|(raw, len)| &raw[i * len..(i + 1) * len])
                    .collect();
                self.parser.decode_frame(&item, *l)
            })
            .collect())
    }

    /// Runs the model on several frames' tensors (at most
    /// [`Self::max_batch`]), each decoded with its own [`Thresholds`]. One
    /// result per tensor, in order. A tensor that does not fit the model
    /// (size, GPU) fails alone; when the run of a batch fails, its frames
    /// are run one by one, so one camera's bad frame fails only that camera.
    pub fn detect_batch(
        &mut self,
        tensors: &[&Tensor],
        thresholds: &[Thresholds],
    ) -> Vec<Result<FrameDetections, InferError>> {
        let mut results: Vec<Option<Result<FrameDetections, InferError>>> = tensors
            .iter()
            .map(|t| self.check_tensor(t).err().map(Err))
            .collect();
        let valid: Vec<usize> = (0..tensors.len())
            .filter(|&i| results[i].is_none())
            .collect();
        // The batcher only batches tensors of one memory and GPU, but a
        // caller may not: each run takes one kind.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in valid {
            match groups
                .iter_mut()
                .find(|g| same_memory(tensors[g[0]], tensors[i]))
            {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        for group in groups {
            let run = |this: &mut Self, items: &[usize]| {
                let views: Vec<&Tensor> = items.iter().map(|&i| tensors[i]).collect();
                let limits: Vec<DecodeLimits> = items
                    .iter()
                    .map(|&i| DecodeLimits {
                        confidence: thresholds[i].confidence,
                        max_detections: thresholds[i].max_detections,
                    })
                    .collect();
                this.decode_run(&views, &limits)
            };
            match run(self, &group) {
                Ok(all) => {
                    for (i, c) in group.iter().zip(all) {
                        results[*i] = Some(Ok(self.to_frame_detections(
                            c,
                            tensors[*i],
                            &thresholds[*i],
                        )));
                    }
                }
                Err(e) if group.len() == 1 => results[group[0]] = Some(Err(e)),
                Err(_) => {
                    for &i in &group {
                        results[i] = Some(run(self, &[i]).map(|mut c| {
                            self.to_frame_detections(c.remove(0), tensors[i], &thresholds[i])
                        }));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every tensor has a result"))
            .collect()
    }

    /// Candidates through NMS, then boxes mapped to frame pixels and
    /// clipped to the frame; classes labelled.
    fn to_frame_detections(
        &self,
        result: FrameResult,
        tensor: &Tensor,
        thresholds: &Thresholds,
    ) -> FrameDetections {
        let t = &tensor.transform;
        let mut frame = FrameDetections {
            model: self.model_name.clone(),
            frame_width: t.frame_width,
            frame_height: t.frame_height,
            ..Default::default()
        };
        let candidates = match result {
            FrameResult::Candidates(c) => c,
            FrameResult::Classes(classes) => {
                frame.classifications = classes
                    .into_iter()
                    .map(|c| Classification {
                        class_id: c.class_id,
                        label: self.label(c.class_id),
                        confidence: c.confidence,
                    })
                    .collect();
                return frame;
            }
            FrameResult::Tensors(tensors) => {
                frame.raw_outputs = tensors;
                return frame;
            }
        };
        let kept = nms::class_wise_nms(candidates, thresholds.nms);
        let (fw, fh) = (t.frame_width as f32, t.frame_height as f32);
        frame.detections = kept
            .into_iter()
            .filter_map(|c| {
                let (x1, y1) = t.to_frame(c.x1, c.y1);
                let (x2, y2) = t.to_frame(c.x2, c.y2);
                let (x1, y1) = (x1.clamp(0.0, fw), y1.clamp(0.0, fh));
                let (x2, y2) = (x2.clamp(0.0, fw), y2.clamp(0.0, fh));
                (x2 > x1 && y2 > y1).then(|| Detection {
                    class_id: c.class_id,
                    label: self.label(c.class_id),
                    confidence: c.confidence,
                    x: x1,
                    y: y1,
                    width: x2 - x1,
                    height: y2 - y1,
                    ..Default::default()
                })
            })
            .collect();
        frame
    }
}
