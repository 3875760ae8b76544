//! The CUDA path against the CPU path, on the same frames: nvh264dec decodes
//! each frame once into CUDA memory, a tee gives it to a GPU branch and, after
//! `cudadownload`, to a CPU branch. Runs where there is a CUDA device and
//! nvh264dec (scripts/gpu-check.sh on the GPU machine); elsewhere (CI) each
//! test prints that it is skipped.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;
use gstcudainfer::spec::ElementType;
use gstcudainfer::tensor::TensorStorage;
use gstcudainfer::tensor_meta;
use gstcudainfer::{Classification, FrameDetections, RawTensor};

fn gpu_available() -> bool {
    init();
    let ready = gstcudainfer::cuda::device::driver_present()
        && gst::ElementFactory::find("nvh264dec").is_some()
        && gst::ElementFactory::find("cudadownload").is_some();
    if !ready {
        eprintln!("skipped: needs a CUDA device, nvh264dec and cudadownload");
    }
    ready
}

/// Frames that reached each branch's appsink, by timestamp, until their
/// twin from the other branch arrives.
struct Pairing<T> {
    gpu: HashMap<u64, T>,
    cpu: HashMap<u64, T>,
    paired: usize,
}

/// `clip` decoded by nvh264dec into CUDA memory; with `frames`, only about
/// its first `frames` (identity returns EOS upstream once it has passed
/// them and the demuxer ends the stream, give or take the frames the
/// decoder drains: count what arrives rather than expect exactly that).
fn cuda_frames(clip: &str, frames: Option<usize>) -> String {
    let bound = frames.map_or(String::new(), |n| format!(" ! identity eos-after={n}"));
    format!(
        "filesrc location={} ! qtdemux ! h264parse ! nvh264dec{bound}",
        media(clip)
    )
}

/// Takes the CUDA frames of `source` (a pipeline fragment, such as
/// [`cuda_frames`]) and gives every frame to `gpu_branch` and, copied to
/// system memory, to `cpu_branch`. `extract`
/// turns a buffer into what is compared (`on_gpu` tells the branch), and
/// `compare(gpu, cpu)` is called for each frame once both are there.
/// Returns the number of frames compared.
fn on_both_paths<T: Send + 'static>(
    source: &str,
    gpu_branch: &str,
    cpu_branch: &str,
    extract: impl Fn(&gst::Buffer, bool) -> T + Send + Sync + 'static,
    compare: impl FnMut(T, T) + Send + 'static,
) -> usize {
    let queue = "queue max-size-buffers=8 max-size-bytes=0 max-size-time=0";
    let pipeline = gst::parse::launch(&format!(
        "{} ! tee name=t \
         t. ! {queue} ! {gpu_branch} ! appsink name=gpu sync=false \
         t. ! {queue} ! cudadownload ! video/x-raw ! {cpu_branch} ! appsink name=cpu sync=false",
        source
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let pairing = Arc::new(Mutex::new(Pairing {
        gpu: HashMap::new(),
        cpu: HashMap::new(),
        paired: 0,
    }));
    let extract = Arc::new(extract);
    let compare = Arc::new(Mutex::new(compare));
    for (name, on_gpu) in [("gpu", true), ("cpu", false)] {
        let sink = pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let (pairing, extract, compare) = (pairing.clone(), extract.clone(), compare.clone());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer_owned().unwrap();
                    let pts = buffer
                        .pts()
                        .expect("decoded frames have timestamps")
                        .nseconds();
                    let item = extract(&buffer, on_gpu);
                    let mut p = pairing.lock().unwrap();
                    let other = if on_gpu { &mut p.cpu } else { &mut p.gpu };
                    match other.remove(&pts) {
                        Some(twin) => {
                            p.paired += 1;
                            drop(p);
                            let mut compare = compare.lock().unwrap();
                            if on_gpu {
                                compare(item, twin)
                            } else {
                                compare(twin, item)
                            }
                        }
                        None => {
                            let own = if on_gpu { &mut p.gpu } else { &mut p.cpu };
                            own.insert(pts, item);
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None, "the pipeline failed");
    let p = pairing.lock().unwrap();
    assert!(
        p.gpu.is_empty() && p.cpu.is_empty(),
        "frames reached one branch only: {} GPU, {} CPU",
        p.gpu.len(),
        p.cpu.len()
    );
    p.paired
}

#[test]
fn cuda_tensors_equal_cpu_tensors() {
    if !gpu_available() {
        return;
    }
    // The model's preset, spelled out since no trtinfer answers the query.
    let preprocess = "cudapreprocess width=416 height=416 channel-order=bgr pad-value=114";
    let stats = Arc::new(Mutex::new((0f64, 0f64, 0usize)));
    let s = stats.clone();
    let frames = on_both_paths(
        &cuda_frames("dog_1080p.mp4", None),
        preprocess,
        preprocess,
        |buffer, on_gpu| {
            let tensor = tensor_meta::get(buffer).expect("every frame carries a tensor");
            assert_eq!(
                matches!(tensor.storage, TensorStorage::Device(_)),
                on_gpu,
                "CUDA frames give GPU tensors, system-memory frames host tensors"
            );
            tensor.to_host().unwrap().into_owned()
        },
        move |gpu, cpu| {
            assert_eq!(gpu.len(), cpu.len());
            let mut s = s.lock().unwrap();
            for (g, c) in gpu.iter().zip(&cpu) {
                let d = (g - c).abs() as f64;
                s.0 = s.0.max(d);
                s.1 += d;
            }
            s.2 += gpu.len();
        },
    );
    let (max, sum, n) = *stats.lock().unwrap();
    let mean = sum / n as f64;
    println!(
        "VERDICT tensor-equality frames={frames} max_abs_diff={max:.5} mean_abs_diff={mean:.6}"
    );
    assert_eq!(frames, 300, "every frame of dog_1080p.mp4 is compared");
    assert!(max <= 1.0, "max |CUDA - CPU| = {max} > 1.0 (0..255 scale)");
    assert!(mean <= 0.1, "mean |CUDA - CPU| = {mean} > 0.1");
}

/// trtinfer's default nms-threshold, spelled out where a test relies on it.
const NMS: f32 = 0.45;

/// How closely a frame's GPU detections must match its CPU detections.
#[derive(Debug, Clone, Copy)]
struct Tolerance {
    /// Lowest IoU of a GPU box with its CPU twin (same class, one to one).
    min_iou: f32,
    /// Largest confidence difference between twins.
    confidence: f32,
    /// Whether a detection may lack a twin when the two paths' last-digit
    /// differences can decide it: it is the candidate at the cut (the
    /// threshold or the max-detections-th), within `confidence` of its
    /// path's least confident detection, which falls on either side of the
    /// cut; or it met a same-class box of about its confidence overlapping
    /// it by about the NMS threshold, which one path kept and the other
    /// suppressed. Off: every detection has a twin.
    near_ties: bool,
}

impl Tolerance {
    /// The same objects at `min_iou`, confidences unchecked.
    fn iou(min_iou: f32) -> Self {
        Tolerance {
            min_iou,
            confidence: f32::INFINITY,
            near_ties: false,
        }
    }
}

/// How the GPU and CPU detections of some frames matched.
#[derive(Debug, Clone, Copy)]
struct Agreement {
    frames: usize,
    /// Detections on the GPU path.
    detections: usize,
    /// The most detections of one frame, on either path.
    most_in_a_frame: usize,
    lowest_iou: f32,
    largest_confidence_diff: f32,
    /// Detections without a twin, excused as near ties.
    near_ties: usize,
}

impl Default for Agreement {
    fn default() -> Self {
        Agreement {
            frames: 0,
            detections: 0,
            most_in_a_frame: 0,
            lowest_iou: 1.0,
            largest_confidence_diff: 0.0,
            near_ties: 0,
        }
    }
}

impl Agreement {
    fn add(&mut self, other: Agreement) {
        self.frames += other.frames;
        self.detections += other.detections;
        self.most_in_a_frame = self.most_in_a_frame.max(other.most_in_a_frame);
        self.lowest_iou = self.lowest_iou.min(other.lowest_iou);
        self.largest_confidence_diff = self
            .largest_confidence_diff
            .max(other.largest_confidence_diff);
        self.near_ties += other.near_ties;
    }
}

/// YOLOX-nano, the model of most GPU checks.
fn yolox() -> String {
    format!("model={}", model())
}

/// Runs dog_1080p.mp4 (its first `frames` if given) through `cudapreprocess
/// ! trtinfer {model} {properties}` with `providers=cuda tf32=false
/// {cuda_properties}` (full fp32 unless the caller asks for TF32)
/// and with `providers=cpu`, and matches each frame's detections at
/// `tolerance`. `model` sets the model (and its model-type).
fn gpu_against_cpu_detections(
    model: &str,
    properties: &str,
    cuda_properties: &str,
    frames: Option<usize>,
    tolerance: Tolerance,
) -> Agreement {
    let infer = |more: &str| {
        format!(
            "cudapreprocess ! trtinfer {model} labels={} {properties} {more}",
            labels()
        )
    };
    let total = Arc::new(Mutex::new(Agreement::default()));
    let t = total.clone();
    on_both_paths(
        &cuda_frames("dog_1080p.mp4", frames),
        &infer(&format!("providers=cuda tf32=false {cuda_properties}")),
        &infer("providers=cpu"),
        |buffer, _| FrameDetections::from_buffer(buffer).expect("every frame carries detections"),
        move |gpu, cpu| {
            let frame = match_objects(&gpu, &cpu, tolerance);
            t.lock().unwrap().add(frame);
        },
    );
    let agreement = *total.lock().unwrap();
    agreement
}

#[test]
fn cuda_detections_equal_cpu_detections() {
    if !gpu_available() {
        return;
    }
    let a = gpu_against_cpu_detections(&yolox(), "", "", None, Tolerance::iou(0.95));
    println!(
        "VERDICT detection-equality frames={} detections={} min_iou={:.4} max_conf_diff={:.1e}",
        a.frames, a.detections, a.lowest_iou, a.largest_confidence_diff
    );
    assert_eq!(a.frames, 300, "every frame of dog_1080p.mp4 is compared");
    assert!(a.detections >= 900, "dog, bicycle and car in every frame");
}

/// The element type of the tensors cudapreprocess makes on the GPU for the
/// model at `model` (as it learns from trtinfer): read on the first frames
/// of dog_1080p.mp4, between the two elements.
fn gpu_tensor_element(model: &str) -> Option<ElementType> {
    let pipeline = gst::parse::launch(&format!(
        "{} ! cudapreprocess ! identity name=between ! trtinfer model={model} providers=cuda tf32=false \
         ! fakesink",
        cuda_frames("dog_1080p.mp4", Some(5))
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let pad = pipeline
        .by_name("between")
        .unwrap()
        .static_pad("src")
        .unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buffer) = info.buffer() {
            if let Some(TensorStorage::Device(d)) =
                tensor_meta::get(buffer).as_deref().map(|t| &t.storage)
            {
                *s.lock().unwrap() = Some(d.element_type());
            }
        }
        gst::PadProbeReturn::Ok
    });
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None);
    let element = *seen.lock().unwrap();
    element
}

/// An fp16 model (YOLOX-nano's fp16 twin, as tests/inference_fp16.rs makes it) on
/// the GPU path: float16 tensors written by the pre-processing kernel, the
/// float16 output converted to float32 on the GPU before the yolox kernel;
/// against the same model on the CPU path (converted on the host).
#[test]
fn fp16_cuda_detections_equal_cpu_detections() {
    if !gpu_available() {
        return;
    }
    let twin = common::onnx::fp16_twin(&std::fs::read(model()).unwrap(), "images", true, true);
    let path = common::onnx::temp_model("yolox_nano_fp16_gpu", &twin);
    let element = gpu_tensor_element(&path);
    let a =
        gpu_against_cpu_detections(&format!("model={path}"), "", "", None, Tolerance::iou(0.95));
    let _ = std::fs::remove_file(&path);
    println!(
        "VERDICT fp16-detection-equality frames={} detections={} min_iou={:.4} max_conf_diff={:.1e} gpu_tensor={element:?}",
        a.frames, a.detections, a.lowest_iou, a.largest_confidence_diff
    );
    assert_eq!(
        element,
        Some(ElementType::Float16),
        "cudapreprocess makes fp16 tensors"
    );
    assert_eq!(a.frames, 300, "every frame of dog_1080p.mp4 is compared");
    assert!(a.detections >= 900, "dog, bicycle and car in every frame");
}

/// The Ultralytics family (yolov8 decoding kernel, centred letterbox in the
/// pre-processing kernel) against its CPU path, with YOLOv12-nano.
#[test]
fn yolov8_cuda_detections_equal_cpu_detections() {
    if !gpu_available() {
        return;
    }
    let yolov12n = shared_dir().join("models/yolov12n.onnx");
    let a = gpu_against_cpu_detections(
        &format!("model={} model-type=yolov8", yolov12n.display()),
        "",
        "",
        None,
        Tolerance::iou(0.95),
    );
    println!(
        "VERDICT yolov8-detection-equality frames={} detections={} min_iou={:.4} max_conf_diff={:.1e}",
        a.frames, a.detections, a.lowest_iou, a.largest_confidence_diff
    );
    assert_eq!(a.frames, 300, "every frame of dog_1080p.mp4 is compared");
    assert!(a.detections >= 900, "dog, bicycle and car in every frame");
}

/// The ssd family (its decoding kernel, both box variants; the stretch of
/// the pre-processing kernel) against its CPU path. No clip of faces is
/// shared, so faces.jpg is repeated: 30 frames uploaded by cudaupload.
#[test]
fn ssd_cuda_detections_equal_cpu_detections() {
    if !gpu_available() {
        return;
    }
    if gst::ElementFactory::find("cudaupload").is_none() {
        eprintln!("skipped: needs cudaupload");
        return;
    }
    let source = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=NV12 \
         ! imagefreeze num-buffers=30 ! cudaupload",
        media("faces.jpg")
    );
    for (model, boxes) in [
        ("ultraface_version-RFB-320.onnx", "decoded"),
        (
            "ultraface_version-RFB-320_without_postprocessing.onnx",
            "raw",
        ),
    ] {
        let infer = |more: &str| {
            format!(
                "cudapreprocess ! trtinfer model={} model-type=ssd ssd-boxes={boxes} \
                 confidence-threshold=0.7 nms-threshold=0.3 {more}",
                shared_dir().join("models").join(model).display()
            )
        };
        let total = Arc::new(Mutex::new(Agreement::default()));
        let t = total.clone();
        on_both_paths(
            &source,
            &infer("providers=cuda tf32=false"),
            &infer("providers=cpu"),
            |buffer, _| {
                FrameDetections::from_buffer(buffer).expect("every frame carries detections")
            },
            move |gpu, cpu| {
                let frame = match_objects(&gpu, &cpu, Tolerance::iou(0.95));
                t.lock().unwrap().add(frame);
            },
        );
        let a = *total.lock().unwrap();
        println!(
            "VERDICT ssd-{boxes}-detection-equality frames={} detections={} most_in_a_frame={} \
             min_iou={:.4} max_conf_diff={:.1e}",
            a.frames, a.detections, a.most_in_a_frame, a.lowest_iou, a.largest_confidence_diff
        );
        assert_eq!(a.frames, 30, "every frame is compared");
        // As the RGB frame of tests/families_others.rs, the NV12 frame has 44 faces
        // on the CPU path (the least confident 0.80, measured), and every
        // GPU face has its CPU twin.
        assert_eq!(a.detections, 30 * 44, "44 faces in every frame");
    }
}

/// TF32 rounds convolution inputs to a 10-bit mantissa: the same objects
/// are found, with boxes that may move by a few pixels.
#[test]
fn tf32_detections_match_cpu_detections() {
    if !gpu_available() {
        return;
    }
    let a = gpu_against_cpu_detections(&yolox(), "", "tf32=true", None, Tolerance::iou(0.7));
    println!(
        "VERDICT tf32-detections frames={} detections={} min_iou={:.4} max_conf_diff={:.1e}",
        a.frames, a.detections, a.lowest_iou, a.largest_confidence_diff
    );
    assert_eq!(a.frames, 300, "every frame of dog_1080p.mp4 is compared");
    assert!(a.detections >= 900, "dog, bicycle and car in every frame");
}

/// max-detections keeps each frame's most confident candidates before NMS:
/// the GPU bounds them with a histogram pass and a second decode, the CPU
/// path by selection; both must keep the same ones.
fn max_detections_equal_cpu(name: &str, confidence: f32, max_detections: usize) {
    if !gpu_available() {
        return;
    }
    const FRAMES: usize = 48;
    let a = gpu_against_cpu_detections(
        &yolox(),
        &format!(
            "confidence-threshold={confidence} max-detections={max_detections} nms-threshold={NMS}"
        ),
        "",
        Some(FRAMES),
        Tolerance {
            min_iou: 0.99,
            confidence: 1e-3,
            near_ties: true,
        },
    );
    println!(
        "VERDICT {name} frames={} detections={} most_in_a_frame={} min_iou={:.4} max_conf_diff={:.1e} near_ties={}",
        a.frames,
        a.detections,
        a.most_in_a_frame,
        a.lowest_iou,
        a.largest_confidence_diff,
        a.near_ties
    );
    assert!(
        a.frames >= FRAMES - 1,
        "the first {FRAMES} frames are compared"
    );
    assert!(
        a.most_in_a_frame <= max_detections,
        "a frame has {} detections, over max-detections={max_detections}",
        a.most_in_a_frame
    );
    assert!(
        a.detections >= 3 * a.frames,
        "dog, bicycle and car in every frame"
    );
    // A near tie needs two values within the paths' rounding of each other:
    // rare. A bound that drops or adds candidates at the cut, or moved
    // boxes, would leave detections without a twin in many frames.
    assert!(
        a.near_ties <= 1 + a.frames / 10,
        "{} detections without a twin in {} frames",
        a.near_ties,
        a.frames
    );
}

#[test]
fn max_detections_300_at_threshold_zero_equal_cpu() {
    max_detections_equal_cpu("max-detections-300-conf-0", 0.0, 300);
}

#[test]
fn max_detections_20_equal_cpu() {
    max_detections_equal_cpu("max-detections-20-conf-0.05", 0.05, 20);
}

/// Matches each GPU detection to a CPU detection of its class (one to one,
/// highest IoU first) and asserts the twins agree within `t`; detections
/// left without a twin must be near ties (see [`Tolerance::near_ties`]).
fn match_objects(gpu: &FrameDetections, cpu: &FrameDetections, t: Tolerance) -> Agreement {
    let (g, c) = (&gpu.detections, &cpu.detections);
    let mut pairs = Vec::new();
    for (i, d) in g.iter().enumerate() {
        for (j, o) in c.iter().enumerate() {
            let overlap = iou(d.corners(), o.corners());
            if d.class_id == o.class_id && overlap >= t.min_iou {
                pairs.push((overlap, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut a = Agreement {
        frames: 1,
        detections: g.len(),
        most_in_a_frame: g.len().max(c.len()),
        ..Agreement::default()
    };
    let (mut g_twin, mut c_twin) = (vec![false; g.len()], vec![false; c.len()]);
    for (overlap, i, j) in pairs {
        if g_twin[i] || c_twin[j] {
            continue;
        }
        (g_twin[i], c_twin[j]) = (true, true);
        let diff = (g[i].confidence - c[j].confidence).abs();
        assert!(
            diff <= t.confidence,
            "{} at IoU {overlap}: confidence {} on the GPU, {} on the CPU: GPU {g:?} CPU {c:?}",
            g[i].label,
            g[i].confidence,
            c[j].confidence
        );
        a.lowest_iou = a.lowest_iou.min(overlap);
        a.largest_confidence_diff = a.largest_confidence_diff.max(diff);
    }
    for (path, own, twinned, other) in [("GPU", g, &g_twin, c), ("CPU", c, &c_twin, g)] {
        let least = own.iter().map(|d| d.confidence).fold(f32::MAX, f32::min);
        for (d, _) in own.iter().zip(twinned).filter(|(_, twinned)| !**twinned) {
            let at_cut = d.confidence - least <= t.confidence;
            let rival = other.iter().any(|o| {
                o.class_id == d.class_id
                    && o.confidence >= d.confidence - t.confidence
                    && iou(d.corners(), o.corners()) >= NMS - 0.01
            });
            assert!(
                t.near_ties && (at_cut || rival),
                "{} ({}) on the {path} path has no twin on the other: GPU {g:?} CPU {c:?}",
                d.label,
                d.confidence
            );
            a.near_ties += 1;
        }
    }
    a
}

/// After inference trtinfer takes cudapreprocess's tensor off the frame
/// unless keep-tensor=true, so that frames queued downstream hold neither
/// the pooled GPU tensor nor its mapping of the decoder's frame.
#[test]
fn trtinfer_drops_the_tensor_unless_keep_tensor() {
    if !gpu_available() {
        return;
    }
    /// What reached the appsink (counted there: the buffers are not kept,
    /// which would hold the pools upstream).
    #[derive(Default)]
    struct Seen {
        frames: usize,
        with_detections: usize,
        with_tensor: usize,
        with_gpu_tensor: usize,
    }
    const FRAMES: usize = 30;
    let mut verdict = Vec::new();
    for keep in [false, true] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let ended = run_inspecting(
            &format!(
                "{} ! cudapreprocess ! trtinfer model={} providers=cuda tf32=false keep-tensor={keep} \
                 ! appsink name=sink",
                cuda_frames("dog_1080p.mp4", Some(FRAMES)),
                model()
            ),
            move |buffer| {
                let tensor = tensor_meta::get(buffer);
                let mut s = s.lock().unwrap();
                s.frames += 1;
                s.with_detections += FrameDetections::from_buffer(buffer).is_some() as usize;
                s.with_tensor += tensor.is_some() as usize;
                s.with_gpu_tensor +=
                    tensor.is_some_and(|t| matches!(t.storage, TensorStorage::Device(_))) as usize;
            },
        );
        assert_eq!(
            ended.error, None,
            "the pipeline failed (keep-tensor={keep})"
        );
        let s = seen.lock().unwrap();
        assert!(
            s.frames >= FRAMES - 1,
            "keep-tensor={keep}: {} frames came out",
            s.frames
        );
        assert_eq!(
            s.with_detections, s.frames,
            "every frame carries detections"
        );
        if keep {
            assert_eq!(
                s.with_gpu_tensor, s.frames,
                "keep-tensor=true leaves the GPU tensor on every frame"
            );
        } else {
            assert_eq!(
                s.with_tensor, 0,
                "keep-tensor=false takes the tensor off every frame"
            );
        }
        verdict.push(format!(
            "keep-tensor={keep}: {}/{} frames with a tensor",
            s.with_tensor, s.frames
        ));
    }
    println!("VERDICT keep-tensor {}", verdict.join(", "));
}

#[test]
fn batched_gpu_streams_equal_the_unbatched_cpu_path() {
    if !gpu_available() {
        return;
    }
    const STREAMS: usize = 4;
    let model = shared_dir().join("models/yolox_nano_dynbatch.onnx");
    let decode = cuda_frames("dog_1080p.mp4", None);
    let infer = format!("trtinfer model={}", model.display());
    let mut description: Vec<String> = (0..STREAMS)
        .map(|i| {
            format!(
                "{decode} ! cudapreprocess ! {infer} name=infer{i} providers=cuda tf32=false max-batch-size=8 \
                 ! appsink name=sink{i} sync=false"
            )
        })
        .collect();
    description.push(format!(
        "{decode} ! cudadownload ! video/x-raw ! cudapreprocess ! {infer} providers=cpu \
         batch-group=reference max-batch-size=1 ! appsink name=reference sync=false"
    ));
    let pipeline = gst::parse::launch(&description.join(" "))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let streams: Vec<Received> = (0..STREAMS)
        .map(|i| collect_detections(&pipeline, &format!("sink{i}")))
        .collect();
    let reference = collect_detections(&pipeline, "reference");
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None, "the pipeline failed");
    let largest_batch = pipeline
        .by_name("infer0")
        .unwrap()
        .property::<u32>("largest-batch");
    let reference: HashMap<u64, Arc<FrameDetections>> =
        reference.lock().unwrap().iter().cloned().collect();
    assert_eq!(reference.len(), 300, "every frame on the CPU path");
    let mut lowest = f32::MAX;
    for (i, frames) in streams.iter().enumerate() {
        let frames = frames.lock().unwrap();
        assert_eq!(frames.len(), 300, "stream {i}: every frame comes out");
        assert!(
            frames.windows(2).all(|w| w[0].0 < w[1].0),
            "stream {i}: frames in order"
        );
        for (pts, d) in frames.iter() {
            lowest = lowest.min(match_objects(d, &reference[pts], Tolerance::iou(0.95)).lowest_iou);
        }
    }
    println!(
        "VERDICT batched-equals-unbatched streams={STREAMS} frames={} largest_batch={largest_batch} min_iou={lowest:.4}",
        STREAMS * 300
    );
    assert!(largest_batch > 1, "the GPU streams were batched");
}

fn mobilenet(properties: &str) -> String {
    let models = shared_dir().join("models");
    format!(
        "trtinfer model={} model-type=classifier labels={} classifier-top-k=3 confidence-threshold=0 {properties}",
        models.join("mobilenetv2_1.0_224_float.onnx").display(),
        models.join("imagenet_labels_1001.txt").display()
    )
}

/// Largest difference between two lists of classes, which must name the
/// same classes in the same order.
fn class_diff(what: &str, gpu: &[Classification], cpu: &[Classification]) -> f32 {
    assert_eq!(
        gpu.iter().map(|c| c.class_id).collect::<Vec<_>>(),
        cpu.iter().map(|c| c.class_id).collect::<Vec<_>>(),
        "{what}: the GPU and CPU paths give other classes: GPU {gpu:?} CPU {cpu:?}"
    );
    gpu.iter()
        .zip(cpu)
        .map(|(g, c)| (g.confidence - c.confidence).abs())
        .fold(0.0, f32::max)
}

/// A whole-frame classifier (MobileNetV2, a fixed batch of 1: a pool of
/// sessions on their own CUDA streams by default) on GPU tensors against
/// the CPU path: the same top 3 classes, confidences within 0.01.
#[test]
fn classifier_on_gpu_tensors_equals_cpu() {
    if !gpu_available() {
        return;
    }
    let worst = Arc::new(Mutex::new((0usize, 0f32)));
    let w = worst.clone();
    on_both_paths(
        &cuda_frames("dog_1080p.mp4", Some(60)),
        &format!(
            "cudapreprocess ! {}",
            mobilenet("providers=cuda tf32=false")
        ),
        &format!("cudapreprocess ! {}", mobilenet("providers=cpu")),
        |buffer, _| FrameDetections::from_buffer(buffer).expect("every frame carries classes"),
        move |gpu, cpu| {
            let diff = class_diff("frame", &gpu.classifications, &cpu.classifications);
            let mut w = w.lock().unwrap();
            w.0 += 1;
            w.1 = w.1.max(diff);
        },
    );
    let (frames, diff) = *worst.lock().unwrap();
    println!("VERDICT classifier-equality frames={frames} top3_same=yes max_conf_diff={diff:.1e}");
    assert!(frames >= 50, "{frames} frames compared");
    assert!(diff <= 0.01, "confidence differs by {diff}");
}

/// Secondary inference on the GPU: YOLOX on the GPU finds the objects once
/// (before the tee, so both paths crop the same boxes); the GPU path crops
/// them from the CUDA frame with the kernel, the CPU path from the
/// downloaded frame; MobileNetV2 classifies each crop. Every object gets
/// the same top 3 classes, confidences within 0.01.
#[test]
fn crops_classified_on_the_gpu_equal_cpu() {
    if !gpu_available() {
        return;
    }
    let detector = format!(
        "{} ! cudapreprocess ! trtinfer model={} labels={} providers=cuda tf32=false",
        cuda_frames("dog_1080p.mp4", Some(60)),
        model(),
        labels()
    );
    let totals = Arc::new(Mutex::new((0usize, 0usize, 0f32)));
    let t = totals.clone();
    on_both_paths(
        &detector,
        &format!(
            "cudapreprocess mode=objects ! {}",
            mobilenet("providers=cuda tf32=false")
        ),
        &format!(
            "cudapreprocess mode=objects ! {}",
            mobilenet("providers=cpu")
        ),
        |buffer, _| FrameDetections::from_buffer(buffer).expect("every frame carries detections"),
        move |gpu, cpu| {
            assert_eq!(gpu.detections.len(), cpu.detections.len());
            let mut t = t.lock().unwrap();
            t.0 += 1;
            for (g, c) in gpu.detections.iter().zip(&cpu.detections) {
                assert!(
                    !g.classifications.is_empty(),
                    "{} was not classified",
                    g.label
                );
                let diff = class_diff(&g.label, &g.classifications, &c.classifications);
                t.1 += 1;
                t.2 = t.2.max(diff);
            }
        },
    );
    let (frames, objects, diff) = *totals.lock().unwrap();
    println!(
        "VERDICT crops-classified-equality frames={frames} objects={objects} top3_same=yes max_conf_diff={diff:.1e}"
    );
    assert!(
        frames >= 50 && objects >= 3 * frames,
        "{frames} frames, {objects} objects"
    );
    assert!(diff <= 0.01, "confidence differs by {diff}");
}

/// model-type=raw on GPU tensors hands on the same outputs as on the CPU.
#[test]
fn raw_outputs_on_gpu_tensors_equal_cpu() {
    if !gpu_available() {
        return;
    }
    let raw = |providers: &str| {
        format!(
            "cudapreprocess width=416 height=416 channel-order=bgr pad-value=114 ! trtinfer model={} \
             model-type=raw providers={providers}",
            model()
        )
    };
    let worst = Arc::new(Mutex::new((0usize, 0f32)));
    let w = worst.clone();
    on_both_paths(
        &cuda_frames("dog_1080p.mp4", Some(30)),
        &raw("cuda"),
        &raw("cpu"),
        |buffer, _| RawTensor::from_buffer(buffer).expect("every frame carries raw outputs"),
        move |gpu, cpu| {
            assert_eq!(gpu.len(), cpu.len());
            let mut w = w.lock().unwrap();
            w.0 += 1;
            for (g, c) in gpu.iter().zip(&cpu) {
                assert_eq!((&g.name, &g.shape), (&c.name, &c.shape));
                let diff = g
                    .data
                    .iter()
                    .zip(&c.data)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                w.1 = w.1.max(diff);
            }
        },
    );
    let (frames, diff) = *worst.lock().unwrap();
    println!("VERDICT raw-equality frames={frames} max_abs_diff={diff:.1e}");
    assert!(frames >= 25, "{frames} frames compared");
    // Objectness and class scores are in 0..1, boxes in pixels: TF32 is
    // off, so the runs differ in summation order only.
    assert!(diff <= 0.05, "outputs differ by {diff}");
}

/// A CUDA graph captured at start and replayed for every batch gives the
/// detections of the CPU path (the same kernels, launched by replay).
#[test]
fn cuda_graph_detections_equal_cpu_detections() {
    if !gpu_available() {
        return;
    }
    let a = gpu_against_cpu_detections(
        &yolox(),
        "batch-group=cuda-graph",
        "cuda-graph=true",
        None,
        Tolerance::iou(0.95),
    );
    println!(
        "VERDICT cuda-graph-detection-equality frames={} detections={} min_iou={:.4} max_conf_diff={:.1e}",
        a.frames, a.detections, a.lowest_iou, a.largest_confidence_diff
    );
    assert_eq!(a.frames, 300, "every frame of dog_1080p.mp4 is compared");
    assert!(a.detections >= 900, "dog, bicycle and car in every frame");
}
