//! `device-id` end to end, on the CPU (CI has no GPU): branches with
//! different `device-id` get a session (batcher) each, branches with the
//! same one share one; the model loads of a pipeline begin at READY, so
//! that a second device's load does not wait for the first's; a CUDA
//! branch on a device that cannot be used fails naming the device. The
//! same on two real GPUs: scripts/gpu-live.sh.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Frames per branch: enough for batches to form, few for CI.
const BRANCH_FRAMES: usize = 6;

/// Frames a stream may have waiting for results: max-frames-in-flight
/// queued and the one its output thread waits on.
const STREAM_JOBS: u32 = 4 + 1;
/// A batch: more than one stream can fill.
const BATCH: u32 = 8;

/// A pipeline of one branch per entry of `devices`, branch i on
/// `devices[i]` (cudapreprocess and trtinfer), sharing `group`. A frame
/// waits up to 5 s for its batch to fill, and a batcher runs at once when
/// every stream waits for results: one stream alone never has more than
/// `STREAM_JOBS` frames in a batch, two streams of one batcher fill `BATCH`
/// before either can wait.
fn on_devices(devices: &[u32], group: &str) -> (gst::Pipeline, Vec<Received>) {
    init();
    let description: Vec<String> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            format!(
                "appsrc name=src{i} format=time ! cudapreprocess device-id={d} \
                 ! trtinfer name=infer{i} device-id={d} model={} providers=cpu \
                 max-batch-size={BATCH} batch-timeout=5000 max-frames-in-flight=4 batch-group={group} \
                 ! appsink name=sink{i} sync=false",
                dynbatch_model()
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&description.join(" "))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let received = (0..devices.len())
        .map(|i| collect_detections(&pipeline, &format!("sink{i}")))
        .collect();
    (pipeline, received)
}

/// Runs two branches on `devices` to the end: each branch's largest batch
/// and its results.
/// Each branch's results, (pts, detections) in arrival order.
type Results = Vec<Vec<(u64, std::sync::Arc<gstcudainfer::FrameDetections>)>>;

fn run_two(devices: [u32; 2], group: &str) -> (Vec<u32>, Results) {
    let (caps, frames) = decoded_frames(BRANCH_FRAMES, 640, 360);
    let (pipeline, received) = on_devices(&devices, group);
    for i in 0..2 {
        feed(&pipeline, &format!("src{i}"), &caps, &frames, true);
    }
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None, "devices {devices:?}");
    let largest = (0..2)
        .map(|i| {
            pipeline
                .by_name(&format!("infer{i}"))
                .unwrap()
                .property::<u32>("largest-batch")
        })
        .collect();
    let results = received
        .iter()
        .map(|r| std::mem::take(&mut *r.lock().unwrap()))
        .collect();
    (largest, results)
}

#[test]
fn branches_on_two_devices_get_a_session_each() {
    let (shared, together) = run_two([0, 0], "devices-same");
    let (apart, separate) = run_two([0, 1], "devices-two");
    println!("largest batch, one device: {shared:?}; two devices: {apart:?}");
    // One batcher: the two streams' frames share runs.
    assert_eq!(
        shared,
        [BATCH, BATCH],
        "one device-id, but the streams were not batched together"
    );
    // A batcher per device: never a frame of the other stream in a run.
    assert!(
        apart.iter().all(|&b| (1..=STREAM_JOBS).contains(&b)),
        "two device-ids, but their streams shared a session: largest batches {apart:?}"
    );
    // The same frames give the same results whichever session ran them.
    for results in together.iter().chain(&separate) {
        assert_eq!(results.len(), BRANCH_FRAMES, "frames lost");
        for ((pts, got), (want_pts, want)) in results.iter().zip(&together[0]) {
            assert_eq!(pts, want_pts, "frames out of order");
            assert!(same_detections(got, want), "at {pts}: {got:?} vs {want:?}");
        }
    }
    assert!(
        together[0].iter().any(|(_, d)| !d.detections.is_empty()),
        "no detections at all: the comparison above says nothing"
    );
}

#[test]
fn models_load_at_ready_so_devices_do_not_wait_for_each_other() {
    // Loaded in start (READY to PAUSED), which a bin calls for one element
    // after the other, the second device's model would wait for the
    // first's. Begun at NULL to READY, both have loaded by the time the
    // pipeline goes on: READY to PAUSED only takes the sessions.
    let timed_start = |group: &str, settle: Option<Duration>| {
        let (pipeline, _) = on_devices(&[0, 1], group);
        let began = Instant::now();
        if let Some(settle) = settle {
            pipeline.set_state(gst::State::Ready).unwrap();
            std::thread::sleep(settle);
        }
        let paused_began = Instant::now();
        // appsrc has no data: PAUSED does not preroll, the call returns
        // once every element has started.
        let change = pipeline.set_state(gst::State::Paused);
        let paused_took = paused_began.elapsed();
        let total = began.elapsed();
        assert!(change.is_ok(), "{group}: cannot start");
        let provider: String = pipeline
            .by_name("infer1")
            .unwrap()
            .property("active-provider");
        assert_eq!(provider, "cpu");
        pipeline.set_state(gst::State::Null).unwrap();
        (paused_took, total)
    };
    // Straight to PAUSED: the loads begun at READY are waited for at once.
    let (cold, _) = timed_start("load-cold", None);
    // Given time at READY, the loads are done before PAUSED is asked for.
    let (warm, _) = timed_start("load-warm", Some(Duration::from_secs(4)));
    println!(
        "READY to PAUSED of two devices' branches: {:.0} ms straight from NULL, {:.0} ms after 4 s at READY",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3
    );
    assert!(
        warm * 2 < cold,
        "the models were not loaded at READY: starting took {warm:?} after 4 s at READY, {cold:?} without"
    );
}

#[test]
fn a_cuda_branch_on_a_device_that_cannot_be_used_names_it() {
    use gstcudainfer::cuda::device::driver_present;
    init();
    if driver_present() && gstcudainfer::cuda::gpu(1).is_ok() {
        println!("this machine has a CUDA device 1: nothing to refuse");
        return;
    }
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time \
         caps=video/x-raw(memory:CUDAMemory),format=NV12,width=64,height=48,framerate=30/1 \
         ! cudapreprocess device-id=1 width=32 height=32 ! fakesink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let mut buffer = gst::Buffer::from_slice(vec![0u8; 64 * 48 * 3 / 2]);
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    let _ = src.push_buffer(buffer);
    let _ = src.end_of_stream();
    let error = run_to_end(&pipeline)
        .error
        .expect("CUDA caps on an unusable device must fail");
    assert!(
        error.contains("cudapreprocess cannot use CUDA memory on CUDA device 1 (device-id)"),
        "{error}"
    );
    // Why, in the driver's words: no driver, or no such device.
    assert!(
        error.contains("there is no CUDA driver on this machine")
            || error.contains("CUDA device 1 cannot be opened"),
        "{error}"
    );
}

#[test]
fn the_decoder_of_each_device_is_found_by_name() {
    init();
    // Without nvcodec (CI) the registry has none and the names are
    // nvcodec's; with it, the element that reports the device.
    use gstcudainfer::decoder_for_device;
    let first = decoder_for_device("h264", 0);
    let second = decoder_for_device("h264", 1);
    println!("h264 decoders: device 0 {first}, device 1 {second}");
    if gst::ElementFactory::find("nvh264dec").is_none() {
        assert_eq!(first, "nvh264dec");
        assert_eq!(second, "nvh264device1dec");
    } else {
        let device_of = |name: &str| {
            gst::ElementFactory::make(name)
                .build()
                .ok()
                .map(|e| e.property_value("cuda-device-id"))
        };
        assert!(device_of(&first).is_some(), "{first} cannot be made");
    }
}
