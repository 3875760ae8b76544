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
use gstcudainfer::tensor_meta::{self, TensorStorage};
use gstcudainfer::FrameDetections;

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

/// Decodes `clip` with nvh264dec into CUDA memory and gives every frame to
/// `gpu_branch` and, copied to system memory, to `cpu_branch`. `extract`
/// turns a buffer into what is compared (`on_gpu` tells the branch), and
/// `compare(gpu, cpu)` is called for each frame once both are there.
/// Returns the number of frames compared.
fn on_both_paths<T: Send + 'static>(
    clip: &str,
    gpu_branch: &str,
    cpu_branch: &str,
    extract: impl Fn(&gst::Buffer, bool) -> T + Send + Sync + 'static,
    compare: impl FnMut(T, T) + Send + 'static,
) -> usize {
    let queue = "queue max-size-buffers=8 max-size-bytes=0 max-size-time=0";
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={clip} ! qtdemux ! h264parse ! nvh264dec ! tee name=t \
         t. ! {queue} ! {gpu_branch} ! appsink name=gpu sync=false \
         t. ! {queue} ! cudadownload ! video/x-raw ! {cpu_branch} ! appsink name=cpu sync=false",
        clip = media(clip)
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
        "dog_1080p.mp4",
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

/// Runs dog_1080p.mp4 through `trtinfer providers=cuda {cuda_properties}`
/// and through the CPU path, checks each frame with `same_objects` at
/// `min_iou`, and returns (frames, GPU detections, lowest IoU).
fn gpu_against_cpu_detections(cuda_properties: &str, min_iou: f32) -> (usize, usize, f32) {
    let infer = |properties: &str| {
        format!(
            "cudapreprocess ! trtinfer model={} labels={} {properties}",
            model(),
            labels()
        )
    };
    let stats = Arc::new(Mutex::new((f32::MAX, 0usize)));
    let s = stats.clone();
    let frames = on_both_paths(
        "dog_1080p.mp4",
        &infer(&format!("providers=cuda {cuda_properties}")),
        &infer("providers=cpu"),
        |buffer, _| FrameDetections::from_buffer(buffer).expect("every frame carries detections"),
        move |gpu, cpu| {
            let best = same_objects(&gpu, &cpu, min_iou);
            let mut s = s.lock().unwrap();
            s.0 = s.0.min(best);
            s.1 += gpu.detections.len();
        },
    );
    let (lowest, detections) = *stats.lock().unwrap();
    (frames, detections, lowest)
}

#[test]
fn cuda_detections_equal_cpu_detections() {
    if !gpu_available() {
        return;
    }
    let (frames, detections, min_iou) = gpu_against_cpu_detections("", 0.95);
    println!(
        "VERDICT detection-equality frames={frames} detections={detections} min_iou={min_iou:.4}"
    );
    assert_eq!(frames, 300, "every frame of dog_1080p.mp4 is compared");
    assert!(detections >= 900, "dog, bicycle and car in every frame");
}

/// TF32 rounds convolution inputs to a 10-bit mantissa: the same objects
/// are found, with boxes that may move by a few pixels.
#[test]
fn tf32_detections_match_cpu_detections() {
    if !gpu_available() {
        return;
    }
    let (frames, detections, min_iou) = gpu_against_cpu_detections("tf32=true", 0.7);
    println!(
        "VERDICT tf32-detections frames={frames} detections={detections} min_iou={min_iou:.4}"
    );
    assert_eq!(frames, 300, "every frame of dog_1080p.mp4 is compared");
    assert!(detections >= 900, "dog, bicycle and car in every frame");
}

/// Asserts that `gpu` found the objects `cpu` found (same count, each GPU
/// box matching a CPU box of its class at IoU >= `min_iou`); returns the
/// lowest IoU.
fn same_objects(gpu: &FrameDetections, cpu: &FrameDetections, min_iou: f32) -> f32 {
    let (g, c) = (&gpu.detections, &cpu.detections);
    assert_eq!(
        g.len(),
        c.len(),
        "different detections: GPU {g:?} CPU {c:?}"
    );
    let mut lowest = f32::MAX;
    for d in g {
        let best = c
            .iter()
            .filter(|o| o.class_id == d.class_id)
            .map(|o| iou(d.corners(), o.corners()))
            .fold(0.0, f32::max);
        assert!(
            best >= min_iou,
            "{} on the GPU matches the CPU path at IoU {best}: GPU {g:?} CPU {c:?}",
            d.label
        );
        lowest = lowest.min(best);
    }
    lowest
}

#[test]
fn batched_gpu_streams_equal_the_unbatched_cpu_path() {
    if !gpu_available() {
        return;
    }
    const STREAMS: usize = 4;
    let clip = media("dog_1080p.mp4");
    let model = shared_dir().join("models/yolox_nano_dynbatch.onnx");
    let decode = format!("filesrc location={clip} ! qtdemux ! h264parse ! nvh264dec");
    let infer = format!("trtinfer model={}", model.display());
    let mut description: Vec<String> = (0..STREAMS)
        .map(|i| {
            format!(
                "{decode} ! cudapreprocess ! {infer} name=infer{i} providers=cuda max-batch-size=8 \
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
            lowest = lowest.min(same_objects(d, &reference[pts], 0.95));
        }
    }
    println!(
        "VERDICT batched-equals-unbatched streams={STREAMS} frames={} largest_batch={largest_batch} min_iou={lowest:.4}",
        STREAMS * 300
    );
    assert!(largest_batch > 1, "the GPU streams were batched");
}
