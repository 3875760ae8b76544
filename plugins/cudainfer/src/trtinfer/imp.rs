use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::error_domains::load_error_message;
use super::in_flight::{Deliver, InFlight, Outcome, Pending};
use super::settings::{
    Overload, Settings, DEFAULT_BATCH_TIMEOUT_MS, DEFAULT_CONFIDENCE, DEFAULT_IN_FLIGHT,
    DEFAULT_LATENCY_BUDGET_MS, DEFAULT_MAX_BATCH, DEFAULT_MAX_DETECTIONS, DEFAULT_NMS,
    DEFAULT_PROVIDERS,
};
use crate::families::classifier::{Activation, ClassifierOptions};
use crate::families::ssd::SsdBoxes;
use crate::families::{self, ModelType};
use crate::inference::batcher::{self, BatchKey, Batcher, BatcherOptions, Membership};
use crate::inference::runtime::Provider;
use crate::inference::LoadError;
use crate::meta::tensor_meta;
use crate::properties::{may_change_now, path_property, MUTABLE_READY};
use crate::tensor::ObjectTensor;
use crate::{spec, FrameDetections, Skip};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtinfer",
        gst::DebugColorFlags::empty(),
        Some("ONNX Runtime inference"),
    )
});

/// The share of `latency-budget` a frame's predicted latency may take:
/// the rest is kept for what the prediction does not see (the wait for the
/// stream's earlier frames, in order; the elements after trtinfer; threads
/// waiting for a core).
const BUDGET_PREDICTED: f64 = 0.8;
/// The window of the `busy` property.
const BUSY_WINDOW: Duration = Duration::from_secs(5);
/// Overload skips are reported (an element message) at most this often.
const SKIP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the stream is live, as its upstream latency query says, kept in
/// an atomic: unknown until the first frame asks.
const LIVE_UNKNOWN: u8 = 0;
const LIVE_YES: u8 = 1;
const LIVE_NO: u8 = 2;

/// While started: the shared batcher and what this stream has in it.
struct State {
    batcher: Arc<Batcher>,
    /// This stream as the batcher sees it.
    membership: Arc<Membership>,
    /// This stream's frames waiting for their results.
    in_flight: Arc<InFlight>,
    budget: Duration,
    max_frames_in_flight: u32,
    /// The frame size of the caps, to check each tensor was made for it.
    frame_size: Option<(u32, u32)>,
    frame_duration: Option<gst::ClockTime>,
    /// The batch time last reported in the latency query.
    reported_batch_time: Duration,
    /// Frames of the stream since start or the last flush, for `interval`.
    frame_index: u64,
}

/// A model load begun at NULL to READY. A bin starts its elements one after
/// the other (READY to PAUSED), so loads begun in `start` would run one at
/// a time: on two GPUs the second GPU's session waited for the first's.
/// Begun at READY, the loads of all trtinfers of a pipeline overlap, and
/// `start` takes the result (loads of one key still share their slot).
struct Preload {
    key: BatchKey,
    options: BatcherOptions,
    handle: std::thread::JoinHandle<Loaded>,
}

/// The batcher or why not, and the warnings to post.
type Loaded = (Result<Arc<Batcher>, LoadError>, Vec<String>);

impl Preload {
    fn begin(key: BatchKey, options: BatcherOptions) -> std::io::Result<Self> {
        let loading = key.clone();
        let handle = std::thread::Builder::new()
            .name("trtinfer-load".into())
            .spawn(move || {
                let mut warnings = Vec::new();
                let loaded = batcher::shared(&loading, options, |w| warnings.push(w.to_string()));
                (loaded, warnings)
            })?;
        Ok(Self {
            key,
            options,
            handle,
        })
    }
}

#[derive(Default)]
pub struct TrtInfer {
    settings: Mutex<Settings>,
    /// The load begun at NULL to READY, taken by `start`.
    preload: Mutex<Option<Preload>>,
    state: Mutex<Option<State>>,
    active_provider: Mutex<Option<&'static str>>,
    /// largest-batch of the last run, readable after stop.
    last_largest_batch: AtomicUsize,
    /// concurrent-runs of the last run, readable after stop.
    last_concurrent_runs: AtomicUsize,
    /// The model's input of the last start, answered while stopped: a
    /// branch being torn down stops trtinfer (downstream first) while the
    /// source may still send caps, and cudapreprocess must not fail there.
    last_input_spec: Mutex<Option<spec::InputSpec>>,
    /// A second trtinfer on the same frames was reported.
    warned_replace: AtomicBool,
    /// Frames passed on uninferred for overload since start (kept after stop).
    skipped: AtomicU64,
    /// When the overload skips were last reported, and the count then.
    skip_report: Mutex<Option<(Instant, u64)>>,
    /// LIVE_UNKNOWN, LIVE_YES or LIVE_NO.
    live: AtomicU8,
}

#[glib::object_subclass]
impl ObjectSubclass for TrtInfer {
    const NAME: &'static str = "GstTrtInfer";
    type Type = super::TrtInfer;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for TrtInfer {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("Path of the ONNX model file (required)")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecEnum::builder_with_default("model-type", ModelType::default())
                    .nick("Model type")
                    .blurb("Model family: decides the input preset and how the output is decoded")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecEnum::builder_with_default("ssd-boxes", SsdBoxes::default())
                    .nick("SSD boxes")
                    .blurb(
                        "model-type=ssd: whether the boxes output is decoded by the model (x1, y1, x2, y2 in 0..1) \
                         or raw regressions decoded against ssd-priors",
                    )
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("ssd-priors")
                    .nick("SSD priors")
                    .blurb(
                        "model-type=ssd with ssd-boxes=raw: the priors, as \
                         strides=8,16,32,64;min-sizes=10,16,24/32,48/64,96/128,192,256;variances=0.1,0.2; \
                         keys left out (or all: unset) take these, UltraFace's, values",
                    )
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "classifier-activation",
                    Activation::default(),
                )
                .nick("Classifier activation")
                .blurb(
                    "model-type=classifier: how output rows become probabilities: auto softmaxes a row \
                     unless it already is a distribution (all in 0..1, summing to about 1)",
                )
                .flags(MUTABLE_READY)
                .build(),
                glib::ParamSpecUInt::builder("classifier-top-k")
                    .nick("Classifier top k")
                    .blurb(
                        "model-type=classifier: how many of the most probable classes (above \
                         confidence-threshold) each frame gets",
                    )
                    .minimum(1)
                    .maximum(1000)
                    .default_value(ClassifierOptions::default().top_k)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("labels")
                    .nick("Labels")
                    .blurb("Text file with one class name per line, in class-id order; unset: class-<id>")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecDouble::builder("confidence-threshold")
                    .nick("Confidence threshold")
                    .blurb("Keep detections whose confidence (objectness x class score) is above this")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_CONFIDENCE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("nms-threshold")
                    .nick("NMS IoU threshold")
                    .blurb("Class-wise non-maximum suppression drops a box overlapping a better one of its class by more than this IoU")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_NMS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("providers")
                    .nick("Execution providers")
                    .blurb("Comma-separated ONNX Runtime execution providers to try in order: tensorrt, cuda, cpu. \
                            The first that works is used (see active-provider); a provider that fails is logged as a warning")
                    .default_value(Some(DEFAULT_PROVIDERS))
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecInt::builder("device-id")
                    .nick("Device ID")
                    .blurb("CUDA device for the cuda and tensorrt providers")
                    .minimum(0)
                    .maximum(i32::MAX)
                    .default_value(0)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb("Path of libonnxruntime.so; unset: $ORT_DYLIB_PATH, then /usr/local/lib, \
                            /opt/onnxruntime/lib, then the dynamic linker's search. One library per process")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecBoolean::builder("cuda-graph")
                    .nick("CUDA graph")
                    .blurb(&format!("cuda provider: capture the model's run as a CUDA graph at start and replay it for \
                            every batch (fewer kernel launches from the host). Needs CUDA frames and a \
                            family decoded on the GPU ({}), and every node of the model on \
                            the cuda provider; its session is alone (sessions 1)", families::gpu_decoded_families()))
                    .default_value(false)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecBoolean::builder("tf32")
                    .nick("TF32 on the CUDA provider")
                    .blurb("Let the cuda provider run convolutions and matrix products on TF32 tensor cores (GPUs since Ampere): \
                            on the H100 a quarter more throughput for YOLOX-nano and a third more for yolov12n at batch 32, \
                            with the same objects as full fp32 in every frame (median IoU 0.9999 for yolov12n); boxes may move by a few pixels. \
                            Off: full fp32, the same detections as providers=cpu. No effect on other providers")
                    .default_value(true)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("tensorrt-cache-dir")
                    .nick("TensorRT cache directory")
                    .blurb("Directory for the tensorrt provider's engine and timing caches, so later starts \
                            skip the engine build; unset: no cache")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecBoolean::builder("tensorrt-fp16")
                    .nick("TensorRT fp16")
                    .blurb("Let the tensorrt provider build fp16 engines (faster, slightly different results)")
                    .default_value(false)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("batch-group")
                    .nick("Batch group")
                    .blurb("trtinfer elements with the same model, providers, GPU and batch-group share one \
                            session and batch their frames together; give groups different names to keep them apart")
                    .default_value(Some(""))
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("max-batch-size")
                    .nick("Maximum batch size")
                    .blurb("Most frames (from all streams of the group) run through the model at once; \
                            on the GPU every run is padded to this size (a new shape costs ONNX Runtime far \
                            more than the padding); a model with a fixed batch dimension runs one at a time \
                            (with a warning)")
                    .minimum(1)
                    .maximum(256)
                    .default_value(DEFAULT_MAX_BATCH)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("sessions")
                    .nick("Sessions")
                    .blurb("Sessions of the model in the group's pool: each runs batches at the same time as \
                            the others (on the GPU, each on its own CUDA stream), so a model with a fixed \
                            batch of 1 still serves many streams; 0: 4 for such a model on a GPU provider, \
                            else 1 (1 with cuda-graph, which refuses more). Each session holds its own copy of the model's weights and workspace")
                    .maximum(16)
                    .default_value(0)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("batch-timeout")
                    .nick("Batch timeout (ms)")
                    .blurb("Longest a frame waits for others to fill its batch, in milliseconds; \
                            the latency budget batching adds")
                    .maximum(10_000)
                    .default_value(DEFAULT_BATCH_TIMEOUT_MS)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("max-frames-in-flight")
                    .nick("Maximum frames in flight")
                    .blurb("Frames of this stream that may be queued for inference before the element waits \
                            for the oldest; output order is kept")
                    .minimum(1)
                    .maximum(256)
                    .default_value(DEFAULT_IN_FLIGHT)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("max-detections")
                    .nick("Maximum detections")
                    .blurb("Most candidates a frame keeps before NMS, the most confident ones (as DeepStream's topk): \
                            bounds the work a low confidence-threshold makes")
                    .minimum(1)
                    .maximum(100_000)
                    .default_value(DEFAULT_MAX_DETECTIONS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("keep-tensor")
                    .nick("Keep tensor")
                    .blurb("Leave cudapreprocess's tensor meta on the frame for the application; off: it is removed \
                            once inference is done, so downstream queues hold neither the GPU tensor nor the \
                            decoder's frame mapping")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Frames passed on uninferred between two inferred frames of this stream (as \
                            nvinfer's interval): 0 infers every frame, 2 every third. Such frames carry empty \
                            results marked skipped; infertrack after trtinfer gives them its predicted boxes, \
                            marked predicted. Streams need not be in phase to batch together. Applies to \
                            whole-frame tensors, not to crops (mode=objects). Mutable while PLAYING")
                    .maximum(1000)
                    .default_value(0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("overload", Overload::Auto)
                    .nick("Overload policy")
                    .blurb("When inference cannot keep up: skip passes on uninferred (marked skipped, counted \
                            in skipped) a frame whose result would come later than latency-budget after the \
                            frame's capture, always keeping one frame of the stream in inference, so latency \
                            stays bounded and every stream degrades evenly; block infers every frame and lets \
                            upstream wait (latency grows without bound under overload); auto: skip for a live \
                            stream, block otherwise. Mutable while PLAYING")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("latency-budget")
                    .nick("Latency budget (ms)")
                    .blurb("With overload=skip (or auto on a live stream), the latest a frame's result may \
                            come, in milliseconds after its capture (its running time, on a live stream) or \
                            after it reached trtinfer. Mutable while PLAYING")
                    .minimum(1)
                    .maximum(60_000)
                    .default_value(DEFAULT_LATENCY_BUDGET_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("skipped")
                    .nick("Skipped frames")
                    .blurb("Frames passed on uninferred because inference could not keep up (overload=skip), \
                            since start; kept after stop. An element message trtinfer-skipped (fields skipped, \
                            recent, latency-budget-ms) reports them at most once a second")
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("busy")
                    .nick("Session busy share")
                    .blurb("Share of the last 5 s the group's shared sessions spent running batches (0 idle, 1 \
                            always busy): 1 minus this is the headroom for more streams; 0 when stopped")
                    .minimum(0.0)
                    .maximum(1.0)
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("largest-batch")
                    .nick("Largest batch")
                    .blurb("The most frames the shared session has run at once so far (0 before the first)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("concurrent-runs")
                    .nick("Concurrent runs")
                    .blurb("The most model runs the group's sessions (see sessions) have had under way at \
                            once so far (0 before the first)")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("batch-timing")
                    .nick("Batch timing")
                    .blurb("Where the shared session's last batches (up to 1024) spent their time, for \
                            benchmarks, as a serialised GstStructure (gst_structure_from_string): batches, \
                            wait-p50-us and wait-p99-us (a batch's oldest frame from queued to the run's \
                            start), run-p50-us and run-p99-us (the model run with output decoding), gap-p50-us \
                            and gap-p99-us (a session idle between two runs while a frame waited), mean-size \
                            (frames per batch); null before start")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("active-provider")
                    .nick("Active provider")
                    .blurb("The execution provider in use once the model is loaded (empty before)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if !may_change_now(self.obj().upcast_ref(), *CAT, pspec) {
            return;
        }
        let mut s = self.settings.lock().unwrap();
        if matches!(
            pspec.name(),
            "model"
                | "model-type"
                | "ssd-boxes"
                | "ssd-priors"
                | "classifier-activation"
                | "classifier-top-k"
        ) {
            *self.last_input_spec.lock().unwrap() = None;
        }
        match pspec.name() {
            "model" => s.model = path_property(value),
            "model-type" => s.model_type = value.get().expect("type checked upstream"),
            "ssd-boxes" => s.ssd.boxes = value.get().expect("type checked upstream"),
            "ssd-priors" => {
                s.ssd.priors = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "classifier-activation" => {
                s.classifier.activation = value.get().expect("type checked upstream")
            }
            "classifier-top-k" => s.classifier.top_k = value.get().expect("type checked upstream"),
            "labels" => s.labels = path_property(value),
            "confidence-threshold" => {
                s.confidence_threshold = value.get().expect("type checked upstream")
            }
            "nms-threshold" => s.nms_threshold = value.get().expect("type checked upstream"),
            "providers" => {
                s.providers = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_PROVIDERS.into())
            }
            "device-id" => s.device_id = value.get().expect("type checked upstream"),
            "ort-library" => s.ort_library = path_property(value),
            "tensorrt-cache-dir" => s.tensorrt_cache_dir = path_property(value),
            "tf32" => s.tf32 = value.get().expect("type checked upstream"),
            "cuda-graph" => s.cuda_graph = value.get().expect("type checked upstream"),
            "tensorrt-fp16" => s.tensorrt_fp16 = value.get().expect("type checked upstream"),
            "batch-group" => {
                s.batch_group = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "sessions" => s.sessions = value.get().expect("type checked upstream"),
            "max-batch-size" => {
                s.max_batch_size = value.get().expect("type checked upstream");
                s.max_batch_size_set = true;
            }
            "batch-timeout" => s.batch_timeout_ms = value.get().expect("type checked upstream"),
            "max-frames-in-flight" => {
                s.max_frames_in_flight = value.get().expect("type checked upstream")
            }
            "max-detections" => s.max_detections = value.get().expect("type checked upstream"),
            "keep-tensor" => s.keep_tensor = value.get().expect("type checked upstream"),
            "interval" => s.interval = value.get().expect("type checked upstream"),
            "overload" => s.overload = value.get().expect("type checked upstream"),
            "latency-budget" => s.latency_budget_ms = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).to_value();
        match pspec.name() {
            "model" => path(&s.model),
            "model-type" => s.model_type.to_value(),
            "ssd-boxes" => s.ssd.boxes.to_value(),
            "ssd-priors" => s.ssd.priors.to_value(),
            "classifier-activation" => s.classifier.activation.to_value(),
            "classifier-top-k" => s.classifier.top_k.to_value(),
            "labels" => path(&s.labels),
            "confidence-threshold" => s.confidence_threshold.to_value(),
            "nms-threshold" => s.nms_threshold.to_value(),
            "providers" => s.providers.to_value(),
            "device-id" => s.device_id.to_value(),
            "ort-library" => path(&s.ort_library),
            "tensorrt-cache-dir" => path(&s.tensorrt_cache_dir),
            "tf32" => s.tf32.to_value(),
            "cuda-graph" => s.cuda_graph.to_value(),
            "tensorrt-fp16" => s.tensorrt_fp16.to_value(),
            "batch-group" => s.batch_group.to_value(),
            "max-batch-size" => s.max_batch_size.to_value(),
            "sessions" => s.sessions.to_value(),
            "batch-timeout" => s.batch_timeout_ms.to_value(),
            "max-frames-in-flight" => s.max_frames_in_flight.to_value(),
            "max-detections" => s.max_detections.to_value(),
            "keep-tensor" => s.keep_tensor.to_value(),
            "interval" => s.interval.to_value(),
            "overload" => s.overload.to_value(),
            "latency-budget" => s.latency_budget_ms.to_value(),
            "skipped" => self.skipped.load(Ordering::Relaxed).to_value(),
            "busy" => self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .map_or(0.0, |s| s.batcher.busy(BUSY_WINDOW))
                .to_value(),
            "largest-batch" => (self.state.lock().unwrap().as_ref().map_or_else(
                || self.last_largest_batch.load(Ordering::Relaxed),
                |s| s.batcher.largest_batch(),
            ) as u32)
                .to_value(),
            "concurrent-runs" => (self.state.lock().unwrap().as_ref().map_or_else(
                || self.last_concurrent_runs.load(Ordering::Relaxed),
                |s| s.batcher.most_concurrent_runs(),
            ) as u32)
                .to_value(),
            "batch-timing" => self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .map(|s| {
                    let t = s.batcher.timing();
                    let us = |d: Duration| d.as_micros() as u64;
                    gst::Structure::builder("batch-timing")
                        .field("batches", t.batches as u64)
                        .field("wait-p50-us", us(t.wait_p50))
                        .field("wait-p99-us", us(t.wait_p99))
                        .field("run-p50-us", us(t.run_p50))
                        .field("run-p99-us", us(t.run_p99))
                        .field("gap-p50-us", us(t.gap_p50))
                        .field("gap-p99-us", us(t.gap_p99))
                        .field("mean-size", t.mean_size)
                        .build()
                        .to_string()
                })
                .to_value(),
            "active-provider" => self
                .active_provider
                .lock()
                .unwrap()
                .unwrap_or("")
                .to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl TrtInfer {
    /// Puts each object's classes (from a classifier run on its crop) on
    /// that object in the frame's detections, and, unless `keep-tensor`,
    /// takes the crops off the frame.
    fn finish_objects(&self, buffer: &mut gst::BufferRef, classes: Vec<(usize, FrameDetections)>) {
        if !self.settings.lock().unwrap().keep_tensor {
            tensor_meta::remove_objects(buffer);
        }
        if classes.is_empty() {
            return;
        }
        // Checked at submission: the crops came from these detections.
        let Some(found) = FrameDetections::from_buffer(buffer) else {
            return;
        };
        let mut found = (*found).clone();
        for (object, result) in classes {
            if let Some(d) = found.detections.get_mut(object) {
                d.classifications = result.classifications;
            }
        }
        FrameDetections::remove_from(buffer);
        found.attach(buffer);
        self.update_latency();
    }

    /// Queues each of a frame's object crops (`cudapreprocess
    /// mode=objects`) for the model; the crops of all streams of the batch
    /// group batch together.
    fn submit_objects(
        &self,
        inbuf: gst::Buffer,
        objects: &[ObjectTensor],
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (model_type, thresholds) = {
            let settings = self.settings.lock().unwrap();
            (settings.model_type, settings.thresholds())
        };
        if model_type != ModelType::Classifier {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                (
                    "the frame carries object crops (cudapreprocess mode=objects), which this trtinfer \
                     cannot use with model-type={}: crops are for classifiers. Set model-type=classifier \
                     and a classifier model, or set mode=frame on the cudapreprocess before it",
                    model_type.nick()
                )
            );
            return Err(gst::FlowError::Error);
        }
        let detections = FrameDetections::from_buffer(&inbuf).map_or(0, |d| d.detections.len());
        if let Some(stray) = objects.iter().find(|o| o.object >= detections) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                (
                    "the frame's crop of object {} has no object: the frame carries {} detections. An \
                     element between cudapreprocess mode=objects and trtinfer changed the detections; \
                     put the cudapreprocess right before this trtinfer",
                    stray.object,
                    detections
                )
            );
            return Err(gst::FlowError::Error);
        }
        let (pending, in_flight) = {
            let guard = self.state.lock().unwrap();
            let state = guard.as_ref().ok_or(gst::FlowError::Flushing)?;
            let replies = objects
                .iter()
                .map(|o| {
                    let reply = state.batcher.submit(
                        &state.membership,
                        o.tensor.clone(),
                        thresholds,
                        state.budget,
                    );
                    (o.object, reply)
                })
                .collect();
            (Pending::Objects(replies), state.in_flight.clone())
        };
        in_flight.submit(inbuf, pending)
    }

    /// Attaches a frame's detections and, unless `keep-tensor`, takes the
    /// tensor off the frame now that inference is done with it.
    fn finish(&self, buffer: &mut gst::BufferRef, detections: FrameDetections) {
        if !self.settings.lock().unwrap().keep_tensor {
            tensor_meta::remove(buffer);
        }
        if FrameDetections::remove_from(buffer)
            && !self.warned_replace.swap(true, Ordering::Relaxed)
        {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                ("the frames already carry detections of an earlier trtinfer: this one replaces them. \
                  Use one trtinfer per cudapreprocess, or set keep-tensor=false on the first to make this an error")
            );
        }
        detections.attach(buffer);
        self.update_latency();
    }

    /// Begins loading the model in the background (NULL to READY); a
    /// setting that is wrong is left for `start` to report.
    fn begin_preload(&self) {
        let settings = self.settings.lock().unwrap().clone();
        let Ok((key, options)) = settings.batch_key() else {
            return;
        };
        gst::debug!(
            CAT,
            imp = self,
            "loading {} in the background",
            key.config.model.display()
        );
        match Preload::begin(key, options) {
            Ok(p) => *self.preload.lock().unwrap() = Some(p),
            // start loads it then, in the streaming thread.
            Err(e) => gst::warning!(CAT, imp = self, "cannot start a loading thread: {e}"),
        }
    }

    /// What this element adds to the pipeline's latency: a frame waits up to
    /// the batch timeout for its batch and then for the batch's run; the
    /// frames queued before it (at most `max-frames-in-flight`) are the
    /// buffering on top.
    /// Whether the stream is live (upstream's latency query), asked once
    /// per start or flush.
    fn is_live(&self) -> bool {
        match self.live.load(Ordering::Relaxed) {
            LIVE_YES => true,
            LIVE_NO => false,
            _ => {
                let mut query = gst::query::Latency::new();
                let live = self.obj().sink_pad().peer_query(&mut query) && query.result().0;
                self.live
                    .store(if live { LIVE_YES } else { LIVE_NO }, Ordering::Relaxed);
                live
            }
        }
    }

    /// How long ago the frame was captured: the pipeline clock's running
    /// time now less the frame's; zero when either is unknown, or the frame
    /// is ahead of the clock (a file played faster than real time).
    fn frame_age(&self, buffer: &gst::BufferRef) -> Duration {
        let obj = self.obj();
        let Some(now) = obj.current_running_time() else {
            return Duration::ZERO;
        };
        let segment = obj.segment();
        let captured = buffer.pts().and_then(|pts| {
            segment
                .downcast_ref::<gst::ClockTime>()
                .and_then(|s| s.to_running_time(pts))
        });
        captured.map_or(Duration::ZERO, |c| {
            Duration::from_nanos(now.saturating_sub(c).nseconds())
        })
    }

    /// Posts `trtinfer-skipped` when frames were skipped for overload since
    /// the last report, at most once per [`SKIP_REPORT_INTERVAL`].
    fn report_skips(&self, budget: Duration) {
        let total = self.skipped.load(Ordering::Relaxed);
        let recent = {
            let mut report = self.skip_report.lock().unwrap();
            let (due, last_total) = match *report {
                Some((at, n)) => (at.elapsed() >= SKIP_REPORT_INTERVAL, n),
                None => (true, 0),
            };
            if total == last_total || !due {
                return;
            }
            *report = Some((Instant::now(), total));
            total - last_total
        };
        let obj = self.obj();
        let structure = gst::Structure::builder("trtinfer-skipped")
            .field("skipped", total)
            .field("recent", recent)
            .field("latency-budget-ms", budget.as_millis() as u64)
            .build();
        let _ = obj.post_message(gst::message::Element::builder(structure).src(&*obj).build());
    }

    fn added_latency(&self) -> (gst::ClockTime, gst::ClockTime) {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            let timeout = self.settings.lock().unwrap().batch_timeout_ms as u64;
            let min = gst::ClockTime::from_mseconds(timeout);
            return (min, min);
        };
        let batch_time = state.batcher.batch_time();
        state.reported_batch_time = batch_time;
        let min = gst::ClockTime::from_nseconds((state.budget + batch_time).as_nanos() as u64);
        let queued = state
            .frame_duration
            .unwrap_or(gst::ClockTime::ZERO)
            .max(gst::ClockTime::from_nseconds(batch_time.as_nanos() as u64))
            * state.max_frames_in_flight as u64;
        (min, min + queued)
    }

    /// Asks the pipeline to query the latency again when batches have come
    /// to take noticeably longer than last reported (a live sink would
    /// otherwise drop frames as late).
    fn update_latency(&self) {
        let grown = self.state.lock().unwrap().as_ref().is_some_and(|s| {
            let now = s.batcher.batch_time();
            now > s.reported_batch_time + s.reported_batch_time / 4 + Duration::from_millis(1)
        });
        if grown {
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
        }
    }
}

impl GstObjectImpl for TrtInfer {}

impl ElementImpl for TrtInfer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ONNX Runtime inference",
                "Filter/Analyzer/Video",
                "Runs an ONNX model through ONNX Runtime (cpu, cuda or tensorrt provider) on the \
                 tensor cudapreprocess attached, batching frames across streams, and attaches the \
                 results: detections or classes (of the frame or of each object's crop) as \
                 GstVideoRegionOfInterestMeta, GstAnalyticsRelationMeta (GStreamer 1.24 and later) \
                 and the project's own meta, or with model-type=raw the model's outputs as they are",
                "gst-cudainfer developers",
            )
        });
        Some(&*METADATA)
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::NullToReady => self.begin_preload(),
            // A load begun but not taken finishes in its thread; the
            // batcher it made goes when the last holder does.
            gst::StateChange::ReadyToNull => drop(self.preload.lock().unwrap().take()),
            _ => {}
        }
        self.parent_change_state(transition)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::metadata_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for TrtInfer {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let (key, options) = settings.batch_key()?;
        let preloaded = self.preload.lock().unwrap().take();
        let batcher = match preloaded.filter(|p| p.key == key && p.options == options) {
            Some(preload) => {
                let (loaded, warnings) = preload
                    .handle
                    .join()
                    .unwrap_or_else(|_| (Err(LoadError::Panicked), Vec::new()));
                for w in warnings {
                    gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", w));
                }
                loaded
            }
            None => batcher::shared(&key, options, |w| {
                gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", w))
            }),
        }
        .map_err(|e| load_error_message(&e))?;
        let info = &batcher.info;
        gst::info!(
            CAT,
            imp = self,
            "{} with the {} execution provider (library {}), input {:?}, batches of up to {}, {} session(s)",
            key.config.model.display(),
            info.active_provider.name(),
            info.library.display(),
            info.input_spec,
            info.max_batch_size,
            info.sessions
        );
        if key.config.cuda.cuda_graph && info.active_provider != Provider::Cuda {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                (
                    "cuda-graph=true applies to the cuda provider only; the {} provider runs without it",
                    info.active_provider.name()
                )
            );
        }
        *self.active_provider.lock().unwrap() = Some(info.active_provider.name());
        *self.last_input_spec.lock().unwrap() = Some(info.input_spec.clone());
        let element = self.obj().downgrade();
        let deliver: Deliver = Box::new(move |mut buffer, result| {
            let Some(element) = element.upgrade() else {
                return Err(gst::FlowError::Flushing);
            };
            match result {
                Ok(Outcome::Frame(detections)) => {
                    gst::trace!(
                        CAT,
                        obj = element,
                        "{} detections",
                        detections.detections.len()
                    );
                    element.imp().finish(buffer.make_mut(), detections);
                    element.src_pad().push(buffer)
                }
                Ok(Outcome::Objects(classes)) => {
                    gst::trace!(CAT, obj = element, "{} objects classified", classes.len());
                    element.imp().finish_objects(buffer.make_mut(), classes);
                    element.src_pad().push(buffer)
                }
                Err(e) => {
                    gst::element_error!(element, gst::StreamError::Failed, ("{}", e));
                    Err(gst::FlowError::Error)
                }
            }
        });
        let membership = Arc::new(batcher.join());
        let waiting = {
            let membership = membership.clone();
            Box::new(move |waiting| membership.set_waiting(waiting))
        };
        *self.state.lock().unwrap() = Some(State {
            batcher,
            membership,
            in_flight: Arc::new(InFlight::start(
                settings.max_frames_in_flight as usize,
                deliver,
                waiting,
            )),
            budget: Duration::from_millis(settings.batch_timeout_ms as u64),
            max_frames_in_flight: settings.max_frames_in_flight,
            frame_size: None,
            frame_duration: None,
            reported_batch_time: Duration::ZERO,
            frame_index: 0,
        });
        self.warned_replace.store(false, Ordering::Relaxed);
        self.skipped.store(0, Ordering::Relaxed);
        *self.skip_report.lock().unwrap() = None;
        self.live.store(LIVE_UNKNOWN, Ordering::Relaxed);
        self.obj().notify("active-provider");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropped outside the lock: the output thread is joined.
        let state = self.state.lock().unwrap().take();
        if let Some(state) = &state {
            self.last_largest_batch
                .store(state.batcher.largest_batch(), Ordering::Relaxed);
            self.last_concurrent_runs
                .store(state.batcher.most_concurrent_runs(), Ordering::Relaxed);
        }
        drop(state);
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        let stream = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| (s.in_flight.clone(), s.membership.clone()));
        if let Some((in_flight, membership)) = stream {
            match event.view() {
                gst::EventView::FlushStart(_) => in_flight.set_flushing(true),
                gst::EventView::FlushStop(_) => {
                    in_flight.set_flushing(false);
                    membership.set_ended(false);
                    if let Some(state) = self.state.lock().unwrap().as_mut() {
                        state.frame_index = 0;
                    }
                    self.live.store(LIVE_UNKNOWN, Ordering::Relaxed);
                }
                // Serialized events stay behind the frames before them; at
                // the end the batcher stops waiting for this stream first.
                _ if event.is_serialized() => {
                    if event.type_() == gst::EventType::Eos {
                        membership.set_ended(true);
                    }
                    let _ = in_flight.drain();
                }
                _ => {}
            }
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Sink && spec::is_input_spec_query(query) {
            if let Some(state) = self.state.lock().unwrap().as_ref() {
                return spec::answer_input_spec_query(query, &state.batcher.info.input_spec);
            }
            return self
                .last_input_spec
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|spec| spec::answer_input_spec_query(query, spec));
        }
        let handled = BaseTransformImplExt::parent_query(self, direction, query);
        if let (true, gst::QueryViewMut::Latency(q)) = (handled, query.view_mut()) {
            let (added_min, added_max) = self.added_latency();
            let (live, min, max) = q.result();
            q.set(live, min + added_min, max.map(|m| m + added_max));
        }
        handled
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "caps {incaps} are not video"))?;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.frame_size = Some((info.width(), info.height()));
            state.frame_duration = (info.fps().numer() > 0).then(|| {
                gst::ClockTime::SECOND
                    .mul_div_floor(info.fps().denom() as u64, info.fps().numer() as u64)
                    .unwrap_or(gst::ClockTime::ZERO)
            });
        }
        Ok(())
    }

    fn propose_allocation(
        &self,
        decide_query: Option<&gst::query::Allocation>,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        // Downstream may not answer (appsink, fakesink); our own need stands.
        if self.parent_propose_allocation(decide_query, query).is_err() {
            gst::debug!(
                CAT,
                imp = self,
                "downstream did not answer the allocation query"
            );
        }
        // Upstream's frames stay with us while in flight (and in a forming
        // batch): a decoder that allocates only what downstream asks for
        // would run out of surfaces and wait.
        let held = self.settings.lock().unwrap().max_frames_in_flight + 1;
        let pools: Vec<_> = query.allocation_pools().collect();
        if pools.is_empty() {
            if let Some(size) = query
                .get_owned()
                .0
                .as_ref()
                .and_then(|caps| gst_video::VideoInfo::from_caps(caps).ok())
                .map(|info| info.size() as u32)
            {
                query.add_allocation_pool(None::<&gst::BufferPool>, size, held, 0);
            }
        } else {
            for (i, (pool, size, min, max)) in pools.into_iter().enumerate() {
                let min = min + held;
                let max = if max == 0 { 0 } else { max.max(min) };
                query.set_nth_allocation_pool(i as u32, pool.as_ref(), size, min, max);
            }
        }
        Ok(())
    }

    fn submit_input_buffer(
        &self,
        is_discont: bool,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        // BaseTransform's own submission applies QoS (the `qos` property):
        // a frame too late to be shown is dropped there, before inference.
        self.parent_submit_input_buffer(is_discont, inbuf)?;
        let Some(inbuf) = self.take_queued_buffer() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let objects = tensor_meta::get_objects(&inbuf);
        let tensor = tensor_meta::get(&inbuf);
        if tensor.is_none() && objects.is_none() {
            let message = if FrameDetections::from_buffer(&inbuf).is_some() {
                "the frame already went through a trtinfer, which took its tensor: put a cudapreprocess \
                 before each trtinfer (mode=objects to classify the objects found), or set keep-tensor=true \
                 on the first"
            } else {
                "the frame carries no tensor meta: put cudapreprocess before trtinfer (... ! cudapreprocess ! trtinfer ...)"
            };
            gst::element_imp_error!(self, gst::StreamError::Format, ("{}", message));
            return Err(gst::FlowError::Error);
        }
        // cudapreprocess attaches one kind and takes the other off.
        if let Some(objects) = objects {
            return self.submit_objects(inbuf, &objects);
        }
        let tensor = tensor.expect("checked above");
        let (thresholds, interval, overload, budget, model) = {
            let s = self.settings.lock().unwrap();
            (
                s.thresholds(),
                s.interval,
                s.overload,
                Duration::from_millis(s.latency_budget_ms as u64),
                s.model.clone(),
            )
        };
        let may_skip = match overload {
            Overload::Skip => true,
            Overload::Block => false,
            Overload::Auto => self.is_live(),
        };
        // Only a live stream's frames have a capture time to be late from.
        let age = if may_skip {
            self.frame_age(&inbuf)
        } else {
            Duration::ZERO
        };
        let (reply, in_flight) = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let t = &tensor.transform;
            if let Some((width, height)) = state
                .frame_size
                .filter(|&size| size != (t.frame_width, t.frame_height))
            {
                drop(guard);
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    (
                        "the frame is {width}x{height} but its tensor was made for a {}x{} frame: an element \
                         between cudapreprocess and trtinfer changed the frame size (videoscale?). Put \
                         cudapreprocess right before trtinfer",
                        t.frame_width,
                        t.frame_height
                    )
                );
                return Err(gst::FlowError::Error);
            }
            let index = state.frame_index;
            state.frame_index += 1;
            let skip = if interval > 0 && index % (interval as u64 + 1) != 0 {
                Some(Skip::Interval)
            } else if may_skip
                // One frame of the stream stays in inference, so that a
                // stream whose every run is over the budget still gets
                // results, at the rate the model allows.
                && state.in_flight.inferring()
                && (age + state.batcher.expected_wait() > budget.mul_f64(BUDGET_PREDICTED)
                    || state.batcher.above_share(&state.membership))
            {
                state.batcher.note_overload();
                Some(Skip::Overload)
            } else {
                None
            };
            let pending = match skip {
                Some(reason) => Pending::Ready(FrameDetections {
                    model: model.map(|m| m.display().to_string()).unwrap_or_default(),
                    frame_width: t.frame_width,
                    frame_height: t.frame_height,
                    skipped: Some(reason),
                    ..Default::default()
                }),
                None => Pending::Frame(state.batcher.submit(
                    &state.membership,
                    tensor,
                    thresholds,
                    state.budget,
                )),
            };
            if skip == Some(Skip::Overload) {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
            (pending, state.in_flight.clone())
        };
        self.report_skips(Duration::from_millis(budget.as_millis() as u64));
        in_flight.submit(inbuf, reply)
    }

    fn generate_output(
        &self,
    ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError> {
        // Results are pushed by the in-flight thread, in order.
        Ok(gst_base::subclass::base_transform::GenerateOutputSuccess::NoOutput)
    }
}
