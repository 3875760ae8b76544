//! ONNX Runtime glue: finding and loading the shared library once per
//! process, and building sessions on an ordered list of execution providers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use ort::environment::Environment;
use ort::ep;
use ort::logging::LogLevel;
use ort::session::builder::SessionBuilder;
use ort::session::Session;

use super::node_placement::{NodePlacements, PlacementReader};

pub use super::error::{ProvidersError, RuntimeError};

/// ONNX Runtime's own messages of the sessions whose log we read.
static ORT_CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "cudainfer-ort",
        gst::DebugColorFlags::empty(),
        Some("ONNX Runtime's messages (GPU sessions)"),
    )
});

/// Oldest ONNX Runtime the `ort` crate accepts, and the one tested.
pub const MIN_ORT_VERSION: &str = "1.17";
pub const TESTED_ORT_VERSION: &str = "1.31.1";

/// Where the library is looked for when neither the `ort-library` property
/// nor `ORT_DYLIB_PATH` names it; the bare name goes through the dynamic
/// linker's search (`LD_LIBRARY_PATH`, `ldconfig` cache).
pub const SEARCHED_LOCATIONS: &[&str] = &[
    "/usr/local/lib/libonnxruntime.so",
    "/opt/onnxruntime/lib/libonnxruntime.so",
    "libonnxruntime.so",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Cpu,
    Cuda,
    TensorRt,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }
}

/// Parses a comma-separated, ordered provider list such as `cuda,cpu`.
pub fn parse_providers(list: &str) -> Result<Vec<Provider>, ProvidersError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let p = match name.to_ascii_lowercase().as_str() {
            "cpu" => Provider::Cpu,
            "cuda" => Provider::Cuda,
            "tensorrt" | "trt" => Provider::TensorRt,
            _ => return Err(ProvidersError::Unknown(name.to_string())),
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(ProvidersError::Empty);
    }
    Ok(out)
}

/// The library to load: the explicit path, else `ORT_DYLIB_PATH`, else the
/// first of [`SEARCHED_LOCATIONS`] that exists (the bare name last).
pub fn resolve_library(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    SEARCHED_LOCATIONS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_absolute() && p.exists())
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
}

/// ONNX Runtime allows one library and one environment per process.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Loads the library (first call) and returns the process-wide environment.
pub fn environment(library: &Path) -> Result<Environment, RuntimeError> {
    let mut guard = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((loaded, env)) = guard.as_ref() {
        if same_file(loaded, library) {
            return Ok(env.clone());
        }
        return Err(RuntimeError::Library(format!(
            "ONNX Runtime is already loaded from '{}' in this process, so '{}' cannot be loaded too: \
             give every trtinfer the same ort-library",
            loaded.display(),
            library.display()
        )));
    }
    let builder = ort::init_from(library).map_err(|e| {
        RuntimeError::Library(format!(
            "cannot use the ONNX Runtime library '{}': {e}. Install ONNX Runtime >= {MIN_ORT_VERSION} \
             (tested: {TESTED_ORT_VERSION}; scripts/setup-deps.sh puts it in .ort/) and point the \
             ort-library property or ORT_DYLIB_PATH at libonnxruntime.so",
            library.display()
        ))
    })?;
    let env = builder.with_name("gst-cudainfer").build().map_err(|e| {
        RuntimeError::Library(format!("cannot create the ONNX Runtime environment: {e}"))
    })?;
    *guard = Some((library.to_path_buf(), env.clone()));
    Ok(env)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// TensorRT provider settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TensorRtOptions {
    /// Engine and timing caches go here; unset: built anew each start.
    pub cache_dir: Option<PathBuf>,
    pub fp16: bool,
}

/// CUDA provider settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CudaOptions {
    /// Convolutions and matrix products on TF32 tensor cores (10-bit
    /// mantissa inputs) on Ampere and later: on the H100 a nano detector runs
    /// about a quarter faster at batch 32, with
    /// results that differ slightly from fp32 and the CPU path.
    pub tf32: bool,
    /// Capture the model's run as a CUDA graph once and replay it (ONNX
    /// Runtime's `enable_cuda_graph`): fewer kernel launches from the host.
    /// Needs fixed input and output addresses and one shape, which the
    /// device runner gives (see `GpuRunner::warm_up`).
    pub cuda_graph: bool,
    /// cuDNN's NHWC convolutions (`prefer_nhwc`): ONNX Runtime moves the
    /// graph's convolutions to channels-last layout, which tensor cores
    /// read without transposes, at the cost of layout changes at the edges.
    pub prefer_nhwc: bool,
    /// cuDNN picks convolution algorithms by its heuristics instead of
    /// timing every one at the first run (ONNX Runtime's default, exhaustive).
    pub heuristic_conv_search: bool,
    /// cuDNN's fused convolution and bias (`fuse_conv_bias`).
    pub fuse_conv_bias: bool,
}

/// Session options that select one provider.
pub struct ProviderOptions {
    pub device_id: i32,
    /// The `CUstream` GPU providers run on (ours), if there is a GPU.
    pub compute_stream: Option<usize>,
    pub cuda: CudaOptions,
    pub tensorrt: TensorRtOptions,
    /// Read where the nodes are placed on the CPU provider too (GPU
    /// providers always are): for tests of the report on a host without
    /// a GPU.
    pub log_placements: bool,
}

fn register(provider: Provider, options: &ProviderOptions) -> ep::ExecutionProviderDispatch {
    let stream = options.compute_stream.map(|s| s as *mut ());
    match provider {
        Provider::Cpu => ep::CPU::default().build(),
        Provider::Cuda => {
            // Full fp32 unless TF32 is asked for, so that by default the GPU
            // gives the CPU path's detections. cuDNN's exhaustive algorithm
            // search stays: it runs once, since GPU batches have one fixed
            // size (see GpuRunner::warm_up).
            let mut cuda = ep::CUDA::default()
                .with_device_id(options.device_id)
                .with_tf32(options.cuda.tf32)
                .with_cuda_graph(options.cuda.cuda_graph)
                .with_prefer_nhwc(options.cuda.prefer_nhwc)
                .with_fuse_conv_bias(options.cuda.fuse_conv_bias);
            if options.cuda.heuristic_conv_search {
                cuda = cuda.with_conv_algorithm_search(ep::cuda::ConvAlgorithmSearch::Heuristic);
            }
            if let Some(stream) = stream {
                // SAFETY: the stream is the process-wide Gpu's, never
                // dropped, or a pool session's own, which its Model drops
                // after the session (field order).
                cuda = unsafe { cuda.with_compute_stream(stream) };
            }
            cuda.build().error_on_failure()
        }
        Provider::TensorRt => {
            let trt = &options.tensorrt;
            let mut tensorrt = ep::TensorRT::default()
                .with_device_id(options.device_id)
                .with_fp16(trt.fp16);
            if let Some(dir) = &trt.cache_dir {
                let dir = dir.display().to_string();
                tensorrt = tensorrt
                    .with_engine_cache(true)
                    .with_engine_cache_path(&dir)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&dir);
            }
            if let Some(stream) = stream {
                // SAFETY: as for CUDA above.
                tensorrt = unsafe { tensorrt.with_compute_stream(stream) };
            }
            tensorrt.build().error_on_failure()
        }
    }
}

/// A session and how it came to be.
pub struct NewSession {
    pub session: Session,
    /// The provider it runs on.
    pub provider: Provider,
    /// Why each provider before it could not be used.
    pub skipped: Vec<String>,
    /// Where ONNX Runtime placed the nodes, for GPU providers (and with
    /// [`ProviderOptions::log_placements`]), if it reported it.
    pub placements: Option<NodePlacements>,
}

/// The session's log at verbose level, read through a logger of our own
/// (ONNX Runtime then gives the session its own log, at the session's
/// level, whatever the environment's): the placement report is read until
/// `loaded` is set; warnings and errors go to our debug category always.
fn log_placements(
    builder: SessionBuilder,
) -> ort::Result<(SessionBuilder, Arc<Mutex<PlacementReader>>, Arc<AtomicBool>)> {
    let reader = Arc::new(Mutex::new(PlacementReader::default()));
    let loaded = Arc::new(AtomicBool::new(false));
    let (r, l) = (reader.clone(), loaded.clone());
    let logger = Arc::new(
        move |level: LogLevel, _category: &str, _id: &str, location: &str, message: &str| {
            if level >= LogLevel::Warning {
                gst::warning!(ORT_CAT, "{message} ({location})");
            } else if !l.load(Ordering::Relaxed) {
                r.lock().unwrap_or_else(|e| e.into_inner()).feed(message);
            }
        },
    );
    let builder = builder
        .with_logger(logger)
        .map_err(ort::Error::<()>::from)?
        .with_log_level(LogLevel::Verbose)
        .map_err(ort::Error::<()>::from)?;
    Ok((builder, reader, loaded))
}

/// Creates a session on the first provider of `providers` that works.
/// Providers that fail are reported in [`NewSession::skipped`]; if none
/// works the error lists every reason.
pub fn create_session(
    env: &Environment,
    model: &Path,
    providers: &[Provider],
    options: &ProviderOptions,
) -> Result<NewSession, RuntimeError> {
    let mut failures = Vec::new();
    for &provider in providers {
        let read_placements = provider != Provider::Cpu || options.log_placements;
        let mut log = None;
        let attempt = Session::builder(env)
            .and_then(|b| {
                b.with_execution_providers([register(provider, options)])
                    .map_err(ort::Error::from)
            })
            .and_then(|b| match read_placements {
                true => log_placements(b).map(|(b, reader, loaded)| {
                    log = Some((reader, loaded));
                    b
                }),
                false => Ok(b),
            })
            .and_then(|mut b| b.commit_from_file(model));
        match attempt {
            Ok(session) => {
                let placements = log.and_then(|(reader, loaded)| {
                    // Runs log at the session's level too: stop reading.
                    loaded.store(true, Ordering::Relaxed);
                    let reader = reader.lock().unwrap_or_else(|e| e.into_inner());
                    reader.placements().cloned()
                });
                return Ok(NewSession {
                    session,
                    provider,
                    skipped: failures,
                    placements,
                });
            }
            Err(e) => {
                let msg = e.to_string();
                // A broken model fails the same way on every provider.
                if provider == Provider::Cpu
                    || msg.contains("Load model")
                    || msg.contains("protobuf")
                {
                    return Err(RuntimeError::Model(format!(
                        "ONNX Runtime cannot load the model '{}': {msg}. Check that it is a valid ONNX file",
                        model.display()
                    )));
                }
                failures.push(format!("{} provider unavailable: {msg}", provider.name()));
            }
        }
    }
    Err(RuntimeError::Provider(format!(
        "no requested execution provider works ({}). Use an ONNX Runtime build with that provider \
         (onnxruntime-gpu for cuda) or add cpu to providers",
        failures.join("; ")
    )))
}
