//! Soak and churn on the CPU path, with a tiny YOLOX-shaped model (written
//! by the test) so that many frames and batches go through the real
//! elements in CI time:
//! - 100,000 frames through one branch with the process's RSS flat after
//!   warm-up;
//! - 32 branches sharing one session, joining and leaving at random for a
//!   bounded time under `G_DEBUG=fatal_warnings`, with no deadlock and no
//!   lost or reordered frame.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::onnx::tiny_yolox_model;
use common::*;
use gst::prelude::*;
use gstcudainfer::FrameDetections;

fn tiny_model() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("tiny_yolox_{}.onnx", std::process::id()));
        std::fs::write(&path, tiny_yolox_model()).unwrap();
        path.display().to_string()
    })
}

/// The process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

const SOAK_FRAMES: usize = 100_000;
const SAMPLE_EVERY: usize = 5_000;
/// Frames before the RSS is taken as settled (pools, ONNX Runtime's arena,
/// the allocator's own caches).
const WARM_UP: usize = 20_000;

#[test]
fn a_hundred_thousand_frames_keep_rss_flat() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={SOAK_FRAMES} pattern=ball ! video/x-raw,format=NV12,width=64,height=48,framerate=30/1 \
         ! cudapreprocess ! trtinfer model={} max-batch-size=8 batch-timeout=1 batch-group=soak \
         ! appsink name=sink sync=false",
        tiny_model()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let samples = Arc::new(Mutex::new(Vec::<(usize, u64)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let in_order = Arc::new(AtomicBool::new(true));
    let last_pts = Arc::new(Mutex::new(None::<gst::ClockTime>));
    let (s, c, o, l) = (
        samples.clone(),
        count.clone(),
        in_order.clone(),
        last_pts.clone(),
    );
    pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap()
        .set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().unwrap();
                    assert!(FrameDetections::from_buffer(buffer).is_some());
                    let pts = buffer.pts();
                    let mut last = l.lock().unwrap();
                    if last.is_some() && pts <= *last {
                        o.store(false, Ordering::Relaxed);
                    }
                    *last = pts;
                    let n = c.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % SAMPLE_EVERY == 0 {
                        s.lock().unwrap().push((n, rss_kib()));
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    let started = Instant::now();
    let ended = run_to_end(&pipeline);
    let elapsed = started.elapsed();
    assert_eq!(ended.error, None);
    assert_eq!(count.load(Ordering::Relaxed), SOAK_FRAMES, "frames lost");
    assert!(in_order.load(Ordering::Relaxed), "frames reordered");
    let samples = samples.lock().unwrap().clone();
    let settled: Vec<u64> = samples
        .iter()
        .filter(|(n, _)| *n > WARM_UP)
        .map(|(_, r)| *r)
        .collect();
    let (low, high) = (
        *settled.iter().min().unwrap(),
        *settled.iter().max().unwrap(),
    );
    println!(
        "soak: {SOAK_FRAMES} frames in {:.1} s ({:.0} fps); RSS after warm-up {} .. {} KiB (growth {} KiB)",
        elapsed.as_secs_f64(),
        SOAK_FRAMES as f64 / elapsed.as_secs_f64(),
        low,
        high,
        high - low
    );
    println!("soak samples (frames, RSS KiB): {samples:?}");
    if let Ok(csv) = std::env::var("SOAK_CSV") {
        let text: String = samples.iter().map(|(n, r)| format!("{n},{r}\n")).collect();
        std::fs::write(csv, format!("frames,rss_kib\n{text}")).unwrap();
    }
    // A leak of one small allocation per frame (a meta, a Vec, a tensor)
    // is 80,000 x at least 64 bytes = 5 MiB over the settled range.
    assert!(
        high - low < 4 * 1024,
        "RSS grew by {} KiB over {} frames after warm-up: {samples:?}",
        high - low,
        SOAK_FRAMES - WARM_UP
    );
}

/// A small deterministic generator (no dependency): xorshift64*.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

const FRAME: u64 = 33_333_333;

/// One branch of the churn: what it was given and what came out.
struct Branch {
    bin: gst::Bin,
    frames: usize,
    /// Ends with EOS (every frame must come out) or is torn down while
    /// running (what came out must be a prefix, in order).
    ends_with_eos: bool,
    /// When the EOS is sent, or the branch torn down.
    end_at: Instant,
    src: gst_app::AppSrc,
    eos_sent: bool,
    received: Arc<Mutex<Vec<u64>>>,
    eos: Arc<AtomicBool>,
}

fn add_branch(
    pipeline: &gst::Pipeline,
    id: usize,
    frames: &[gst::Buffer],
    random: &mut Random,
) -> Branch {
    let bin = gst::parse::bin_from_description(
        &format!(
            "appsrc name=src format=time caps=video/x-raw,format=NV12,width=64,height=48,framerate=30/1 \
             ! cudapreprocess ! trtinfer model={} max-batch-size=8 batch-timeout=2 max-frames-in-flight=4 \
             batch-group=churn ! appsink name=sink sync=false",
            tiny_model()
        ),
        false,
    )
    .unwrap();
    bin.set_property("name", format!("branch{id}"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let eos = Arc::new(AtomicBool::new(false));
    let (r, e) = (received.clone(), eos.clone());
    bin.by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap()
        .set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().unwrap();
                    assert!(FrameDetections::from_buffer(buffer).is_some());
                    r.lock().unwrap().push(buffer.pts().unwrap().nseconds());
                    Ok(gst::FlowSuccess::Ok)
                })
                .eos(move |_| e.store(true, Ordering::SeqCst))
                .build(),
        );
    pipeline.add(&bin).unwrap();
    bin.sync_state_with_parent().unwrap();
    let count = 1 + random.below(40) as usize;
    let ends_with_eos = random.below(4) != 0;
    let src = bin
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    for i in 0..count {
        let mut buffer = frames[i % frames.len()].copy();
        buffer
            .make_mut()
            .set_pts(gst::ClockTime::from_nseconds(i as u64 * FRAME));
        let _ = src.push_buffer(buffer);
    }
    Branch {
        bin,
        frames: count,
        ends_with_eos,
        end_at: Instant::now() + Duration::from_millis(random.below(1000)),
        src,
        eos_sent: false,
        received,
        eos,
    }
}

/// Takes `branch` out of the running pipeline and checks what it received.
fn remove_branch(pipeline: &gst::Pipeline, branch: Branch) {
    // Locked, so that the pipeline's own state changes (async-done of
    // other branches) do not set it back to PLAYING meanwhile.
    branch.bin.set_locked_state(true);
    let change = branch.bin.set_state(gst::State::Null);
    let (_, current, pending) = branch.bin.state(gst::ClockTime::ZERO);
    assert!(
        change.is_ok() && current == gst::State::Null,
        "{}: to NULL: {change:?}, now {current:?} (pending {pending:?})",
        branch.bin.name()
    );
    pipeline.remove(&branch.bin).unwrap();
    let got = branch.received.lock().unwrap();
    let expected: Vec<u64> = (0..got.len() as u64).map(|i| i * FRAME).collect();
    assert_eq!(
        *got,
        expected,
        "{}: lost or reordered frames",
        branch.bin.name()
    );
    if branch.ends_with_eos {
        assert_eq!(
            got.len(),
            branch.frames,
            "{}: frames lost before EOS",
            branch.bin.name()
        );
    }
}

/// The churn itself; run by `branches_join_and_leave_at_random` in a child
/// process with `G_DEBUG=fatal_warnings` (GLib reads it when it loads).
#[test]
#[ignore = "run by branches_join_and_leave_at_random under G_DEBUG=fatal_warnings"]
fn churn_child() {
    init();
    let seconds: u64 = std::env::var("CHURN_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let frames: Vec<gst::Buffer> = (0..8u8)
        .map(|k| gst::Buffer::from_mut_slice(vec![k.wrapping_mul(31); 64 * 48 * 3 / 2]))
        .collect();
    let pipeline = gst::Pipeline::new();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let mut active: Vec<Branch> = Vec::new();
    let (mut made, mut most) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline || !active.is_empty() {
        if Instant::now() < deadline && active.len() < 32 && random.below(3) != 0 {
            active.push(add_branch(&pipeline, made, &frames, &mut random));
            made += 1;
            most = most.max(active.len());
        }
        let now = Instant::now();
        for b in active.iter_mut() {
            if b.ends_with_eos && !b.eos_sent && now >= b.end_at {
                let _ = b.src.end_of_stream();
                b.eos_sent = true;
            }
        }
        let (done, going): (Vec<Branch>, Vec<Branch>) = active.into_iter().partition(|b| {
            if b.ends_with_eos {
                b.eos.load(Ordering::SeqCst)
            } else {
                now >= b.end_at
            }
        });
        active = going;
        for branch in done {
            remove_branch(&pipeline, branch);
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                panic!(
                    "error from {:?}: {} ({:?})",
                    msg.src().map(|s| s.path_string()),
                    e.error(),
                    e.debug()
                );
            }
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(60),
            "branches never reached EOS: a deadlock ({} left)",
            active.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    println!("churn: {made} branches over {seconds} s, up to {most} at once");
    assert!(
        most >= 16,
        "the churn never had many branches at once ({most})"
    );
}

#[test]
fn branches_join_and_leave_at_random() {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["churn_child", "--exact", "--ignored", "--nocapture"])
        .env("G_DEBUG", "fatal_warnings")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the churn hung");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the churn failed: {status}");
}
