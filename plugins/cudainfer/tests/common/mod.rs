//! Shared helpers of the integration tests: plugin set-up, test data
//! location, running pipelines and collecting what comes out.
#![allow(dead_code)]

pub mod onnx;

use std::path::PathBuf;
use std::sync::Once;

use gst::prelude::*;
use gstcudainfer::FrameDetections;

/// Registers the plugin and points ONNX Runtime at the checkout's `.ort/`
/// copy (scripts/setup-deps.sh) unless `ORT_DYLIB_PATH` says otherwise.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            let local = repo_root().join(".ort/libonnxruntime.so");
            // SAFETY: runs once, before any thread of ours reads the environment.
            unsafe { std::env::set_var("ORT_DYLIB_PATH", local) };
        }
        gst::init().unwrap();
        gstcudainfer::plugin_register_static().unwrap();
    });
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared test data: `$CUDAINFER_SHARED_DIR`, else `../shared` beside
/// the checkout, else `/work/shared`.
pub fn shared_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("CUDAINFER_SHARED_DIR").map(PathBuf::from),
        Some(repo_root().join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("models/yolox_nano.onnx").exists())
        .expect("test data not found: set CUDAINFER_SHARED_DIR to the folder holding models/ and media/")
}

pub fn model() -> String {
    shared_dir()
        .join("models/yolox_nano.onnx")
        .display()
        .to_string()
}

/// The path of `name` in the shared models folder.
pub fn shared_model(name: &str) -> String {
    shared_dir().join("models").join(name).display().to_string()
}

pub fn labels() -> String {
    shared_dir()
        .join("models/coco-labels.txt")
        .display()
        .to_string()
}

pub fn media(name: &str) -> String {
    shared_dir().join("media").join(name).display().to_string()
}

/// What a pipeline run produced.
pub struct Run {
    pub buffers: Vec<gst::Buffer>,
    /// The text of the first error message (not its debug detail).
    pub error: Option<String>,
    /// Warning messages posted before the end.
    pub warnings: Vec<String>,
}

impl Run {
    pub fn detections(&self) -> Vec<std::sync::Arc<FrameDetections>> {
        self.buffers
            .iter()
            .map(|b| FrameDetections::from_buffer(b).expect("every frame carries detections"))
            .collect()
    }

    pub fn expect_error(&self) -> &str {
        self.error
            .as_deref()
            .expect("the pipeline should have failed")
    }
}

/// Runs `description`, whose last element must be `appsink name=sink`, to
/// EOS or the first error, collecting the buffers.
pub fn run(description: &str) -> Run {
    let buffers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = buffers.clone();
    let Ended { error, warnings } = run_inspecting(description, move |b| {
        store.lock().unwrap().push(b.to_owned())
    });
    let buffers = std::mem::take(&mut *buffers.lock().unwrap());
    Run {
        buffers,
        error,
        warnings,
    }
}

/// Runs `description` like [`run`] but hands each buffer reaching
/// `appsink name=sink` to `inspect` and drops it: a test that kept every
/// buffer would also keep the pooled memory they hold upstream.
pub fn run_inspecting(
    description: &str,
    mut inspect: impl FnMut(&gst::BufferRef) + Send + 'static,
) -> Ended {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    if let Some(sink) = pipeline.by_name("sink") {
        let sink = sink.downcast::<gst_app::AppSink>().unwrap();
        sink.set_property("sync", false);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    inspect(sample.buffer().unwrap());
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    run_to_end(&pipeline)
}

/// How a pipeline run ended.
pub struct Ended {
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

/// Longest a pipeline may go without a bus message before [`run_to_end`]
/// calls it stuck (long runs post state and latency messages, and QoS).
const SILENCE_LIMIT_S: u64 = 600;

/// Plays `pipeline` to EOS or the first error and stops it. A pipeline
/// that neither ends nor fails within the silence limit is an error too,
/// never a short run that looks complete.
pub fn run_to_end(pipeline: &gst::Pipeline) -> Ended {
    let mut warnings = Vec::new();
    let bus = pipeline.bus().unwrap();
    // An appsink nobody pulls from holds its EOS until its samples are
    // taken (wait-on-eos): the run would never end.
    for element in pipeline.iterate_recurse().into_iter().flatten() {
        if element.factory().is_some_and(|f| f.name() == "appsink") {
            element.set_property("wait-on-eos", false);
        }
    }
    // A failed start has posted its error already: read it without waiting.
    let started = pipeline.set_state(gst::State::Playing).is_ok();
    let wait = gst::ClockTime::from_seconds(if started { SILENCE_LIMIT_S } else { 1 });
    let mut error = None;
    let mut ended = false;
    for msg in bus.iter_timed(wait) {
        match msg.view() {
            gst::MessageView::Eos(_) => {
                ended = true;
                break;
            }
            gst::MessageView::Error(e) => {
                error = Some(e.error().to_string());
                break;
            }
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            _ => {}
        }
    }
    if !started && error.is_none() {
        error = Some("state change failed without an error message".into());
    }
    if started && !ended && error.is_none() {
        error = Some(format!(
            "the pipeline neither ended nor failed: no bus message for {SILENCE_LIMIT_S} s"
        ));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    Ended { error, warnings }
}

/// What an appsink received: (pts, detections), in arrival order.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(u64, std::sync::Arc<FrameDetections>)>>>;

/// Collects the timestamp and detections of every buffer reaching the
/// appsink `name` of `pipeline`.
pub fn collect_detections(pipeline: &gst::Pipeline, name: &str) -> Received {
    let received = Received::default();
    let store = received.clone();
    pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap()
        .set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().unwrap();
                    let d = FrameDetections::from_buffer(buffer).expect("detections");
                    store
                        .lock()
                        .unwrap()
                        .push((buffer.pts().unwrap().nseconds(), d));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    received
}

/// Intersection over union of two boxes given as (x1, y1, x2, y2).
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// Pairs each of `want` one to one with the detection of `got` of its class
/// that overlaps it most; panics (naming `what`) unless both hold the same
/// objects, each at IoU >= `min_iou` and confidence within `max_diff`.
/// Returns the lowest IoU and the largest confidence difference.
pub fn assert_same_objects(
    what: &str,
    got: &[gstcudainfer::Detection],
    want: &[gstcudainfer::Detection],
    min_iou: f32,
    max_diff: f32,
) -> (f32, f32) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?}\nvs\n{want:?}");
    let mut used = vec![false; got.len()];
    let mut worst = (1.0f32, 0.0f32);
    for w in want {
        let (i, overlap) = got
            .iter()
            .enumerate()
            .filter(|(i, g)| !used[*i] && g.class_id == w.class_id)
            .map(|(i, g)| (i, iou(g.corners(), w.corners())))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or_else(|| panic!("{what}: no class {} for {w:?} in {got:?}", w.label));
        used[i] = true;
        let diff = (got[i].confidence - w.confidence).abs();
        assert!(
            overlap >= min_iou,
            "{what}: IoU {overlap} for {w:?} / {:?}",
            got[i]
        );
        assert!(
            diff <= max_diff,
            "{what}: confidence {diff} apart for {w:?} / {:?}",
            got[i]
        );
        worst = (worst.0.min(overlap), worst.1.max(diff));
    }
    worst
}

/// One object of `dog.reference.json`.
#[derive(Debug, Clone)]
pub struct Reference {
    pub class_id: u32,
    pub label: String,
    pub confidence: f32,
    pub bbox: [f32; 4],
}

pub fn reference_detections() -> Vec<Reference> {
    references_in(std::path::Path::new(&media("dog.reference.json")))
}

/// The `detections` of a reference JSON file (class_id, label, confidence,
/// x1, y1, x2, y2), as the reference scripts write them.
pub fn references_in(path: &std::path::Path) -> Vec<Reference> {
    let text = std::fs::read_to_string(path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(reference_from_json)
        .collect()
}

/// One detection of a reference script's JSON (class_id, label,
/// confidence, x1, y1, x2, y2).
pub fn reference_from_json(d: &serde_json::Value) -> Reference {
    let f = |k: &str| d[k].as_f64().unwrap() as f32;
    Reference {
        class_id: d["class_id"].as_u64().unwrap() as u32,
        label: d["label"].as_str().unwrap().to_string(),
        confidence: f("confidence"),
        bbox: [f("x1"), f("y1"), f("x2"), f("y2")],
    }
}

// --- Branches of appsrc ! cudapreprocess ! trtinfer ! appsink ---

/// Frames of dog_1080p.mp4 the branch tests use.
pub const FRAMES: usize = 12;

pub fn dynbatch_model() -> String {
    shared_dir()
        .join("models/yolox_nano_dynbatch.onnx")
        .display()
        .to_string()
}

/// The first `FRAMES` frames of dog_1080p.mp4, decoded to NV12, and their caps.
pub fn frames() -> (gst::Caps, Vec<gst::Buffer>) {
    decoded_frames(FRAMES, 1920, 1080)
}

/// The first `count` frames of dog_1080p.mp4, decoded to NV12 at
/// `width` x `height`, and their caps.
pub fn decoded_frames(count: usize, width: u32, height: u32) -> (gst::Caps, Vec<gst::Buffer>) {
    let mut run = run(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! identity eos-after={count} \
         ! videoconvert ! videoscale ! video/x-raw,format=NV12,width={width},height={height} \
         ! appsink name=sink",
        media("dog_1080p.mp4")
    ));
    assert_eq!(run.error, None);
    let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::Nv12, width, height)
        .fps(gst::Fraction::new(30, 1))
        .build()
        .unwrap()
        .to_caps()
        .unwrap();
    // The decoder may let a few more through before the EOS.
    assert!(run.buffers.len() >= count);
    run.buffers.truncate(count);
    (caps, run.buffers)
}

/// A pipeline of `branches` branches with `trtinfer` settings `infer`; the
/// appsrcs are `src<i>`, the appsinks `sink<i>`, whose detections are
/// collected in the returned vector, by branch.
pub fn branches(branches: usize, infer: &str) -> (gst::Pipeline, Vec<Received>) {
    init();
    let description: Vec<String> = (0..branches)
        .map(|i| {
            format!(
                "appsrc name=src{i} format=time ! cudapreprocess ! trtinfer name=infer{i} {infer} \
                 ! appsink name=sink{i} sync=false"
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&description.join(" "))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let received = (0..branches)
        .map(|i| collect_detections(&pipeline, &format!("sink{i}")))
        .collect();
    (pipeline, received)
}

/// Feeds `frames` (with their own timestamps) into appsrc `name` and ends
/// its stream if `eos`.
pub fn feed(
    pipeline: &gst::Pipeline,
    name: &str,
    caps: &gst::Caps,
    frames: &[gst::Buffer],
    eos: bool,
) {
    let src = pipeline
        .by_name(name)
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_caps(Some(caps));
    for f in frames {
        let _ = src.push_buffer(f.copy());
    }
    if eos {
        let _ = src.end_of_stream();
    }
}

pub fn same_detections(a: &FrameDetections, b: &FrameDetections) -> bool {
    a.detections.len() == b.detections.len()
        && a.detections.iter().zip(&b.detections).all(|(x, y)| {
            x.class_id == y.class_id
                && (x.confidence - y.confidence).abs() < 1e-3
                && iou(x.corners(), y.corners()) > 0.99
        })
}
