//! `pipeline_bench --live`: N streams played at their real frame rate, as
//! cameras would deliver them, and what each frame costs on its way.
//!
//! Each branch is fed by a live `appsrc` with the clip's encoded frames,
//! read once and looped with continuous timestamps (one stream, as a camera
//! sends: a `concat` of files made every decoder set itself up again at each
//! new file, all streams at nearly the same moment), paced by `identity
//! sync=true` before the parser and decoder (a camera delivers frame k at
//! its time, not as fast as a file reads; `h264parse` gives the decoder the
//! stream format it takes, as after a depayloader: nvh264dec refuses the
//! demuxer's caps as they are). Being live matters to the decoder too: a
//! GstH264Decoder (nvh264dec) upstream of a live source outputs each frame as
//! soon as it is decoded, while behind a file it may hold frames until its
//! picture buffer is full (several frame periods), which no camera pays. The
//! sinks do not synchronise (`sync=false`): results are consumed when they
//! come, as an analytics application does, and the time a frame reaches its
//! sink is when its results are there. Branch i starts i/N of a frame period
//! after branch 0 (its timestamps shifted), so streams are not in phase.
//!
//! Per frame, keyed by PTS: when the source delivered it (the running time
//! identity released it at: its PTS, since the feeder sends no DTS, as a
//! camera's depayloader), when it left the decoder and when it reached the
//! sink. The end-to-end latency that a run is judged on is decoder output
//! to sink, what the pipeline adds. The source-to-sink time is shown beside it:
//! it adds decoding and the stream's reordering (a clip with B-frames holds
//! a frame until the frames it precedes in display order are decoded: with
//! `dog_1080p.mp4`'s up to 3 frames, 100 ms at 30 fps, before any inference).
//! A frame is late when it reaches its sink more than the latency budget
//! (`--latency-ms`) plus one frame period after it left the decoder (a
//! display with that latency would have dropped it); lost when the source
//! delivered it and a frame after it in display order (PTS) reached the sink
//! first (a decoder outputs in display order, so that frame will never come).
//! Start-up (PLAYING asked until every stream's first frame reached its
//! sink) is reported apart. The frames a source delivered while its
//! decoder and the model were still being set up are a backlog that the
//! pipeline works off first, faster than real time (on the H200, 80 streams'
//! sinks got ~3,500 frames/s for 6 s before settling at 2,400): the steady
//! state begins `SETTLING` after start-up at the earliest, and once the
//! sinks are back to the sources' rate (`caught_up`). A run that never gets
//! there, or whose sources could not deliver at their real rate in the
//! steady state (`KEPT_UP`: the pipeline held them back), fails.
//!
//! To locate where that time goes, the same frame is also stamped at
//! cudapreprocess's src pad and at trtinfer's sink and src pads (`pre{i}`,
//! `infer{i}`, where the mode has them), found again by its PTS in the
//! stream's table of frames in transit (one lock per stream, one lookup per
//! pad), and the steady state's stage times are reported beside trtinfer's
//! own `batch-timing` of its shared session.
//!
//! Included with `#[path = "common/live.rs"] mod live;`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::nvml::Nvml;

use gstcudainfer::{FrameDetections, Skip};

/// After every stream's first frame, how long before the steady state.
pub const SETTLING: Duration = Duration::from_secs(1);

/// The window over which the sinks' rate is compared with the sources'.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The least steady state that is judged: shorter, the run did not catch
/// up in time.
const LEAST_STEADY: Duration = Duration::from_secs(2);

/// In the steady state the sources must have delivered at least this share
/// of the frames due at their real rate: less, and the pipeline held them
/// back (a camera would have had to drop them).
pub const KEPT_UP: f64 = 0.97;

/// One frame at its sink.
struct Arrival {
    at: Instant,
    pts: u64,
    /// Source (its running time) to sink pad: what a camera's frame waits
    /// for its results.
    end_to_end_ms: f64,
    /// Decoder src pad to sink pad: pre-processing, batching, inference.
    after_decoder_ms: f64,
    /// When it passed the pads between decoder and sink.
    marks: Marks,
    /// trtinfer passed it on without running the model (its results say
    /// why).
    skipped: Option<Skip>,
}

/// When a frame passed each probed pad on its way (where the branch has
/// that element).
#[derive(Default, Clone, Copy)]
struct Marks {
    left_decoder: Option<Instant>,
    /// cudapreprocess's src pad: its tensor launched (host side).
    preprocessed: Option<Instant>,
    /// trtinfer's sink pad: handed to the shared batcher.
    infer_in: Option<Instant>,
    /// trtinfer's src pad: its results pushed.
    infer_out: Option<Instant>,
}

/// A frame between its source and its sink.
struct Transit {
    /// Its running time (ms): when the source delivered it.
    time_ms: f64,
    marks: Marks,
}

#[derive(Default)]
struct StreamLog {
    /// When the paced source delivered each frame.
    delivered_at: Vec<Instant>,
    /// Frames out of the decoder.
    decoded: u64,
    /// Frames on their way, by PTS.
    in_transit: HashMap<u64, Transit>,
    arrivals: Vec<Arrival>,
}

/// What a live run is made of.
pub struct LiveSetup<'a> {
    /// One pipeline description per stream; stream i's elements are named
    /// `src{i}` (an `appsrc`), `pace{i}` (its `identity sync=true`),
    /// `dec{i}` and `sink{i}` (`sync=false`), and where the mode has them
    /// `pre{i}` (cudapreprocess) and `infer{i}` (trtinfer).
    pub branches: Vec<String>,
    /// The CUDA device of each stream.
    pub devices: Vec<u32>,
    /// The frames every source plays, `loops` times.
    pub clip: Arc<Clip>,
    pub loops: usize,
    pub latency: Duration,
    pub period: Duration,
    /// Stop after this long, if the clip has not ended.
    pub limit: Option<Duration>,
    /// NVML of each device in `devices`, where available.
    pub nvml: &'a HashMap<u32, Arc<Nvml>>,
}

/// One device's share of a live run (or all of it).
#[derive(Debug, Clone, Default)]
pub struct LiveRow {
    pub label: String,
    pub streams: usize,
    /// Frames the sources delivered, decoded, and that reached the sinks
    /// (whole run).
    pub delivered: u64,
    pub decoded: u64,
    pub at_sinks: u64,
    /// Steady-state frames that reached the sink more than the latency
    /// budget plus one period after they left the decoder.
    pub late: u64,
    /// Steady-state frames that trtinfer passed on uninferred because
    /// inference could not keep up (`overload=skip`).
    pub skipped: u64,
    /// Frames the source delivered that will never reach the sink: a frame
    /// after them in display order arrived first (those only still on
    /// their way when a time limit stopped the run are not counted).
    pub lost: u64,
    /// End-to-end latency (decoder output to sink), steady state.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Source to sink (decoding and reordering included), steady state.
    pub source_p50_ms: Option<f64>,
    pub source_p99_ms: Option<f64>,
    /// Frames the sources delivered in the steady state, as a share of
    /// those due at their real rate.
    pub kept_up: Option<f64>,
    pub decoder_percent: Option<f64>,
    pub sm_percent: Option<f64>,
}

/// One stage of the frames' way in the steady state: between two probed
/// pads, over the frames that passed both.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: &'static str,
    pub frames: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// trtinfer's `batch-timing` (its shared session's last batches), read
/// from `infer0` at the end of the run, before the pipeline stops.
#[derive(Debug, Clone, Default)]
pub struct BatchTiming {
    pub batches: u64,
    pub wait_p50_us: u64,
    pub wait_p99_us: u64,
    pub run_p50_us: u64,
    pub run_p99_us: u64,
    /// Absent in a plugin older than the field.
    pub gap_p50_us: Option<u64>,
    pub gap_p99_us: Option<u64>,
    pub mean_size: f64,
}

impl BatchTiming {
    fn from_structure(s: &gst::StructureRef) -> Option<BatchTiming> {
        Some(BatchTiming {
            batches: s.get("batches").ok()?,
            wait_p50_us: s.get("wait-p50-us").ok()?,
            wait_p99_us: s.get("wait-p99-us").ok()?,
            run_p50_us: s.get("run-p50-us").ok()?,
            run_p99_us: s.get("run-p99-us").ok()?,
            gap_p50_us: s.get("gap-p50-us").ok(),
            gap_p99_us: s.get("gap-p99-us").ok(),
            mean_size: s.get("mean-size").ok()?,
        })
    }
}

/// `infer0`'s `batch-timing`, if the branch has a trtinfer that has the
/// property (null before start, so read it while playing).
fn read_batch_timing(pipeline: &gst::Pipeline) -> Option<BatchTiming> {
    let infer = pipeline.by_name("infer0")?;
    infer.find_property("batch-timing")?;
    let s: gst::Structure = infer
        .property::<Option<String>>("batch-timing")?
        .parse()
        .ok()?;
    BatchTiming::from_structure(&s)
}

pub struct LiveResult {
    pub startup: Option<Duration>,
    /// From every stream's first frame until the sinks came down to the
    /// sources' rate; `None`: they never did in time.
    pub catch_up: Option<Duration>,
    /// Steady state, seconds.
    pub seconds: f64,
    pub rows: Vec<LiveRow>,
    pub total: LiveRow,
    /// All streams' steady-state frames, stage by stage (those the mode
    /// has), decoder→sink last.
    pub stages: Vec<Stage>,
    pub batch: Option<BatchTiming>,
    /// The host's CPU busy share (all cores) in the steady state.
    pub host_cpu_percent: Option<f64>,
}

/// When the sinks came down to the sources' rate (`rate` frames a second),
/// looking from `from` on: the end of the first [`RATE_WINDOW`] in which at
/// most 5 % more frames than the sources' rate reached them. The frames the
/// sources delivered while the decoders and the model were being set up are
/// a backlog that the pipeline works off first, faster than real time; the
/// steady state begins after it. `None` if that leaves less than
/// [`LEAST_STEADY`] before `until`. `arrivals` are sorted.
pub fn caught_up(
    arrivals: &[Instant],
    from: Instant,
    until: Instant,
    rate: f64,
) -> Option<Instant> {
    let most = (rate * RATE_WINDOW.as_secs_f64() * 1.05).ceil() as usize;
    let step = RATE_WINDOW / 4;
    let mut start = from;
    while start + RATE_WINDOW + LEAST_STEADY <= until {
        let end = start + RATE_WINDOW;
        let first = arrivals.partition_point(|&a| a < start);
        let past = arrivals.partition_point(|&a| a < end);
        if past - first <= most {
            return Some(end);
        }
        start += step;
    }
    None
}

/// The `p` quantile of sorted values, if there are any.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[(last as f64 * p).round() as usize])
}

/// A clip's encoded frames (parsed H.264 as its demuxer gives them), read
/// once and shared by every stream.
pub struct Clip {
    caps: gst::Caps,
    frames: Vec<gst::Buffer>,
    /// From its first frame's PTS to the end of its last: one loop's shift.
    length: gst::ClockTime,
}

pub fn read_clip(media: &str) -> Result<Clip, String> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={media} ! qtdemux ! h264parse ! appsink name=out sync=false"
    ))
    .map_err(|e| format!("cannot read {media}: {e}"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot play {media}: {e}"))?;
    let mut caps = None;
    let mut frames = Vec::new();
    // Until EOS (or an error, which the bus says below).
    while let Ok(sample) = sink.pull_sample() {
        if caps.is_none() {
            caps = sample.caps_owned();
        }
        if let Some(b) = sample.buffer_owned() {
            frames.push(b);
        }
    }
    let error = pipeline
        .bus()
        .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
        .map(|m| format!("{m:?}"));
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(e) = error {
        return Err(format!("cannot read {media}: {e}"));
    }
    // From the first frame's PTS (an edit list can start the clip late) to
    // the end of the last: the loops follow each other without a gap.
    let first = frames.iter().filter_map(|b| b.pts()).min();
    let end = frames
        .iter()
        .filter_map(|b| b.pts().map(|p| p + b.duration().unwrap_or_default()))
        .max();
    let length = first
        .zip(end)
        .map(|(first, end)| end - first)
        .ok_or_else(|| format!("{media} has no timestamped frames"))?;
    Ok(Clip {
        caps: caps.ok_or_else(|| format!("{media} gave no caps"))?,
        frames,
        length,
    })
}

impl Clip {
    /// The frame period, from the caps' frame rate.
    pub fn frame_period(&self) -> Result<Duration, String> {
        let rate = self
            .caps
            .structure(0)
            .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .ok_or_else(|| format!("no frame rate in the clip's caps: {}", self.caps))?;
        Ok(Duration::from_secs_f64(
            rate.denom() as f64 / rate.numer() as f64,
        ))
    }
}

/// Feeds `src` the clip `loops` times, its PTS shifted by `offset` and by
/// the clip's length each loop, one frame each time it asks.
fn feed(src: &gst_app::AppSrc, clip: Arc<Clip>, loops: usize, offset: gst::ClockTime) {
    src.set_caps(Some(&clip.caps));
    src.set_format(gst::Format::Time);
    src.set_is_live(true);
    let mut next = 0usize;
    src.set_callbacks(
        gst_app::AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                let n = clip.frames.len();
                if next >= n * loops {
                    if next == n * loops {
                        let _ = src.end_of_stream();
                        next += 1;
                    }
                    return;
                }
                let shift = clip.length * (next / n) as u64 + offset;
                let mut frame = clip.frames[next % n].copy();
                {
                    let f = frame.make_mut();
                    f.set_pts(f.pts().map(|t| t + shift));
                    // A camera sends each frame once captured, at its PTS
                    // (the B-frames that precede it in display order right
                    // after); a file's DTS runs frames earlier, and identity
                    // would pace on it. No DTS, as from an RTP depayloader.
                    f.set_dts(gst::ClockTime::NONE);
                }
                next += 1;
                let _ = src.push_buffer(frame);
            })
            .build(),
    );
}

/// The host's CPU time so far, from /proc/stat's first line: (busy,
/// total) in clock ticks, all cores together; `None` where there is none.
fn host_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Samples taken every 100 ms during a run: each device's decoder and SM
/// percent, and the host's CPU ticks.
#[derive(Default)]
struct Samples {
    gpu: Vec<(Instant, u32, u32, u32)>,
    cpu: Vec<(Instant, u64, u64)>,
}

/// The host's busy share of all its cores from the first sample at or
/// after `from` to the last.
fn host_cpu_percent(cpu: &[(Instant, u64, u64)], from: Instant) -> Option<f64> {
    let first = cpu.iter().find(|s| s.0 >= from)?;
    let last = cpu.last()?;
    let total = last.2.checked_sub(first.2).filter(|&t| t > 0)?;
    Some(100.0 * last.1.saturating_sub(first.1) as f64 / total as f64)
}

fn sample_utilisation(
    nvml: Vec<(u32, Arc<Nvml>)>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Samples> {
    std::thread::spawn(move || {
        let mut samples = Samples::default();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let at = Instant::now();
            for (device, n) in &nvml {
                samples
                    .gpu
                    .push((at, *device, n.decoder_percent(), n.sm_percent()));
            }
            if let Some((busy, total)) = host_cpu_ticks() {
                samples.cpu.push((at, busy, total));
            }
        }
        samples
    })
}

pub fn run_live(setup: &LiveSetup) -> Result<LiveResult, String> {
    let streams = setup.branches.len();
    let pipeline = gst::parse::launch(&setup.branches.join("  "))
        .map_err(|e| format!("cannot build the live pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let logs: Vec<Arc<Mutex<StreamLog>>> = (0..streams).map(|_| Default::default()).collect();
    for (i, log) in logs.iter().enumerate() {
        let by_name = |name: String| {
            pipeline
                .by_name(&name)
                .ok_or_else(|| format!("the live branch has no element {name}"))
        };
        // Out of phase: stream i starts i/N of a period after stream 0.
        let offset = setup.period.as_nanos() as u64 * i as u64 / streams as u64;
        let src = by_name(format!("src{i}"))?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| format!("src{i} is not an appsrc"))?;
        feed(
            &src,
            setup.clip.clone(),
            setup.loops,
            gst::ClockTime::from_nseconds(offset),
        );
        let pace = by_name(format!("pace{i}"))?
            .static_pad("src")
            .ok_or("identity has no src pad")?;
        let l = log.clone();
        pace.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
                return gst::PadProbeReturn::Ok;
            };
            // Released by identity at the running time of its PTS: the
            // feeder sends no DTS, which identity would sync on first.
            let time = pad
                .sticky_event::<gst::event::Segment>(0)
                .and_then(|e| {
                    e.segment()
                        .downcast_ref::<gst::ClockTime>()
                        .and_then(|s| s.to_running_time(pts))
                })
                .map(|rt| rt.nseconds() as f64 / 1e6);
            let mut l = l.lock().unwrap();
            l.delivered_at.push(Instant::now());
            if let Some(time_ms) = time {
                let transit = Transit {
                    time_ms,
                    marks: Marks::default(),
                };
                l.in_transit.insert(pts.nseconds(), transit);
            }
            gst::PadProbeReturn::Ok
        });
        let l = log.clone();
        by_name(format!("dec{i}"))?
            .static_pad("src")
            .ok_or("the decoder has no src pad")?
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                    let mut l = l.lock().unwrap();
                    l.decoded += 1;
                    if let Some(t) = l.in_transit.get_mut(&pts.nseconds()) {
                        t.marks.left_decoder = Some(Instant::now());
                    }
                }
                gst::PadProbeReturn::Ok
            });
        // The stages between decoder and sink, where the mode has them: a
        // frame is found again by its PTS (in-place elements keep it).
        type Mark = fn(&mut Marks) -> &mut Option<Instant>;
        let stage_pads: [(String, &str, Mark); 3] = [
            (format!("pre{i}"), "src", |m| &mut m.preprocessed),
            (format!("infer{i}"), "sink", |m| &mut m.infer_in),
            (format!("infer{i}"), "src", |m| &mut m.infer_out),
        ];
        for (name, pad, mark) in stage_pads {
            let Some(pad) = pipeline.by_name(&name).and_then(|e| e.static_pad(pad)) else {
                continue;
            };
            let l = log.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(pts) = info.buffer().and_then(|b| b.pts()) {
                    let now = Instant::now();
                    if let Some(t) = l.lock().unwrap().in_transit.get_mut(&pts.nseconds()) {
                        *mark(&mut t.marks) = Some(now);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        let sink = by_name(format!("sink{i}"))?;
        let l = log.clone();
        let element = sink.downgrade();
        sink.static_pad("sink")
            .ok_or("the sink has no sink pad")?
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let at = Instant::now();
                let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
                    return gst::PadProbeReturn::Ok;
                };
                let skipped = info
                    .buffer()
                    .and_then(|b| FrameDetections::from_buffer(b))
                    .and_then(|d| d.skipped);
                let now = element
                    .upgrade()
                    .and_then(|e| e.current_running_time())
                    .map(|rt| rt.nseconds() as f64 / 1e6);
                let mut l = l.lock().unwrap();
                if let (Some(t), Some(now)) = (l.in_transit.remove(&pts.nseconds()), now) {
                    l.arrivals.push(Arrival {
                        at,
                        pts: pts.nseconds(),
                        end_to_end_ms: now - t.time_ms,
                        after_decoder_ms: t
                            .marks
                            .left_decoder
                            .map_or(f64::NAN, |left| (at - left).as_secs_f64() * 1e3),
                        marks: t.marks,
                        skipped,
                    });
                }
                gst::PadProbeReturn::Ok
            });
    }

    let mut devices: Vec<u32> = setup.devices.clone();
    devices.sort_unstable();
    devices.dedup();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_utilisation(
        devices
            .iter()
            .filter_map(|d| setup.nvml.get(d).map(|n| (*d, n.clone())))
            .collect(),
        stop.clone(),
    );
    let asked = Instant::now();
    let bus = pipeline.bus().ok_or("no bus")?;
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        // The element that failed said why on the bus.
        let why = bus
            .timed_pop_filtered(gst::ClockTime::ZERO, &[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            });
        let _ = pipeline.set_state(gst::State::Null);
        return Err(format!(
            "cannot start the live pipeline: {}",
            why.unwrap_or_else(|| e.to_string())
        ));
    }
    let mut failure = None;
    let mut last_report = Instant::now();
    loop {
        if setup.limit.is_some_and(|l| asked.elapsed() > l) {
            break;
        }
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(200),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => break,
            Some(gst::MessageView::Error(e)) => {
                failure = Some(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
            _ => {}
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            let at_sinks: usize = logs.iter().map(|l| l.lock().unwrap().arrivals.len()).sum();
            eprintln!("  live x{streams}: {at_sinks} frames at the sinks");
        }
    }
    let ended = Instant::now();
    // The batcher's timing covers its last batches: the end of the steady
    // state, and it is gone once trtinfer stops.
    let batch = read_batch_timing(&pipeline);
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(f) = failure {
        return Err(f);
    }

    let logs: Vec<StreamLog> = logs
        .into_iter()
        .map(|l| std::mem::take(&mut *l.lock().unwrap()))
        .collect();
    // Start-up: until the slowest stream's first frame.
    let firsts: Vec<Option<Instant>> = logs
        .iter()
        .map(|l| l.arrivals.first().map(|a| a.at))
        .collect();
    let started = firsts
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|f| f.into_iter().max());
    let startup = started.map(|s| s - asked);
    // The first frames of the last streams to start meet decoders and
    // batches still filling, and the frames delivered during start-up wait
    // behind them: the steady state begins a settling time later, once the
    // sinks are back to the sources' rate.
    let mut all_arrivals: Vec<Instant> = logs
        .iter()
        .flat_map(|l| l.arrivals.iter().map(|a| a.at))
        .collect();
    all_arrivals.sort_unstable();
    let rate = streams as f64 / setup.period.as_secs_f64();
    let back =
        started.and_then(|s| caught_up(&all_arrivals, (s + SETTLING).min(ended), ended, rate));
    let catch_up = started.zip(back).map(|(s, b)| b - s);
    let steady_from = back.unwrap_or(ended);
    let seconds = (ended - steady_from).as_secs_f64();
    let period_ms = setup.period.as_secs_f64() * 1e3;
    let budget_ms = setup.latency.as_secs_f64() * 1e3;

    let row = |label: String, members: &[usize]| -> LiveRow {
        let mut latencies: Vec<f64> = Vec::new();
        let mut from_source: Vec<f64> = Vec::new();
        let mut r = LiveRow {
            label,
            streams: members.len(),
            ..Default::default()
        };
        let mut delivered_steady = 0usize;
        for &i in members {
            let l = &logs[i];
            r.delivered += l.delivered_at.len() as u64;
            r.decoded += l.decoded;
            r.at_sinks += l.arrivals.len() as u64;
            delivered_steady += l.delivered_at.iter().filter(|&&d| d >= steady_from).count();
            // A decoder outputs a stream in display (PTS) order, not in the
            // order it was delivered (B-frames): a frame whose PTS is before
            // the last to arrive is not coming (one only slow is not lost).
            if let Some(last) = l.arrivals.iter().map(|a| a.pts).max() {
                r.lost += l.in_transit.keys().filter(|&&pts| pts < last).count() as u64;
            }
            for a in l.arrivals.iter().filter(|a| a.at >= steady_from) {
                if a.skipped == Some(Skip::Overload) {
                    r.skipped += 1;
                }
                from_source.push(a.end_to_end_ms);
                if !a.after_decoder_ms.is_nan() {
                    latencies.push(a.after_decoder_ms);
                    if a.after_decoder_ms > budget_ms + period_ms {
                        r.late += 1;
                    }
                }
            }
        }
        let due = members.len() as f64 * seconds / setup.period.as_secs_f64();
        r.kept_up = (due > 0.0).then(|| delivered_steady as f64 / due);
        from_source.sort_by(f64::total_cmp);
        r.source_p50_ms = percentile(&from_source, 0.5);
        r.source_p99_ms = percentile(&from_source, 0.99);
        latencies.sort_by(f64::total_cmp);
        r.p50_ms = percentile(&latencies, 0.5);
        r.p99_ms = percentile(&latencies, 0.99);
        r.max_ms = latencies.last().copied();
        let on: Vec<&(Instant, u32, u32, u32)> = samples
            .gpu
            .iter()
            .filter(|s| s.0 >= steady_from && members.iter().any(|&i| setup.devices[i] == s.1))
            .collect();
        if !on.is_empty() {
            let n = on.len() as f64;
            r.decoder_percent = Some(on.iter().map(|s| s.2 as f64).sum::<f64>() / n);
            r.sm_percent = Some(on.iter().map(|s| s.3 as f64).sum::<f64>() / n);
        }
        r
    };
    let rows = devices
        .iter()
        .map(|d| {
            let members: Vec<usize> = (0..streams).filter(|&i| setup.devices[i] == *d).collect();
            row(format!("GPU {d}"), &members)
        })
        .collect();
    let all: Vec<usize> = (0..streams).collect();
    let total = row("all".into(), &all);
    // Inferred frames only: one passed on uninferred did not wait for a
    // batch, and would hide those that did.
    let stages = stages(logs.iter().flat_map(|l| {
        l.arrivals
            .iter()
            .filter(|a| a.at >= steady_from && a.skipped.is_none())
    }));
    Ok(LiveResult {
        startup,
        catch_up,
        seconds,
        rows,
        total,
        stages,
        batch,
        host_cpu_percent: host_cpu_percent(&samples.cpu, steady_from),
    })
}

/// The stages' p50 and p99 over `arrivals`, each over the frames that have
/// both of its marks; a stage no frame has (the mode lacks its element) is
/// left out.
fn stages<'a>(arrivals: impl Iterator<Item = &'a Arrival>) -> Vec<Stage> {
    type Span = fn(&Arrival) -> Option<(Instant, Instant)>;
    let spans: [(&'static str, Span); 5] = [
        ("decoder→preprocess", |a| {
            a.marks.left_decoder.zip(a.marks.preprocessed)
        }),
        ("preprocess→trtinfer in", |a| {
            a.marks.preprocessed.zip(a.marks.infer_in)
        }),
        ("trtinfer in→out (batch wait + run + ordering)", |a| {
            a.marks.infer_in.zip(a.marks.infer_out)
        }),
        ("trtinfer out→sink", |a| {
            a.marks.infer_out.map(|o| (o, a.at))
        }),
        ("decoder→sink", |a| {
            a.marks.left_decoder.map(|d| (d, a.at))
        }),
    ];
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); spans.len()];
    for a in arrivals {
        for (k, (_, span)) in spans.iter().enumerate() {
            if let Some((from, to)) = span(a) {
                ms[k].push(to.saturating_duration_since(from).as_secs_f64() * 1e3);
            }
        }
    }
    spans
        .iter()
        .zip(ms)
        .filter(|(_, v)| !v.is_empty())
        .map(|((name, _), mut v)| {
            v.sort_by(f64::total_cmp);
            Stage {
                name,
                frames: v.len(),
                p50_ms: percentile(&v, 0.5),
                p99_ms: percentile(&v, 0.99),
            }
        })
        .collect()
}

/// Whether a run met the goal: the sinks came back to the sources' rate
/// after start-up, and in the steady state the sources delivered at their
/// real rate ([`KEPT_UP`]), no frame was lost, late or passed on uninferred
/// for overload, end-to-end (decoder to sink) p99 within `budget`.
pub fn meets(result: &LiveResult, budget: Duration) -> bool {
    let row = &result.total;
    result.catch_up.is_some()
        && row.kept_up.is_some_and(|k| k >= KEPT_UP)
        && row.lost == 0
        && row.late == 0
        && row.skipped == 0
        && row.at_sinks > 0
        && row.p99_ms.is_some_and(|p| p <= budget.as_secs_f64() * 1e3)
}

pub fn print_table(streams: usize, result: &LiveResult, budget: Duration) {
    let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
    let pct = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.0}"));
    println!();
    println!(
        "### live, {streams} streams: start-up {}, {}",
        result
            .startup
            .map_or("never (a stream sent no frame)".into(), |s| format!(
                "{:.2} s",
                s.as_secs_f64()
            )),
        match result.catch_up {
            Some(c) => format!(
                "the sinks back to the sources' rate {:.1} s after it (its backlog worked off), then a steady state of {:.1} s",
                c.as_secs_f64(),
                result.seconds
            ),
            None => format!(
                "the sinks never came back to the sources' rate with {} s left (still working off a backlog, or not keeping up): no steady state",
                LEAST_STEADY.as_secs()
            ),
        }
    );
    println!(
        "| GPU | streams | delivered | decoded | at the sinks | lost | late (decoder→sink > budget + 1 period) | delivered / real rate | decoder→sink p50 ms | p99 ms | max ms | source→sink p50 ms | p99 ms | NVDEC % | SM % |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let many = result.rows.len() > 1;
    for r in result.rows.iter().chain(many.then_some(&result.total)) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.streams,
            r.delivered,
            r.decoded,
            r.at_sinks,
            r.lost,
            r.late,
            r.kept_up.map_or(String::new(), |k| format!("{k:.3}")),
            ms(r.p50_ms),
            ms(r.p99_ms),
            ms(r.max_ms),
            ms(r.source_p50_ms),
            ms(r.source_p99_ms),
            pct(r.decoder_percent),
            pct(r.sm_percent)
        );
    }
    if let Some(cpu) = result.host_cpu_percent {
        println!(
            "host CPU busy in the steady state: {cpu:.0} % of {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    let t = &result.total;
    // One line for scripts.
    println!(
        "LIVE streams={streams} delivered={} lost={} late={} p99_ms={} startup_s={} catch_up_s={} kept_up={} skipped={} cpu={} pass={}",
        t.delivered,
        t.lost,
        t.late,
        t.p99_ms.map_or("none".into(), |p| format!("{p:.1}")),
        result
            .startup
            .map_or("none".into(), |s| format!("{:.2}", s.as_secs_f64())),
        result
            .catch_up
            .map_or("none".into(), |c| format!("{:.1}", c.as_secs_f64())),
        t.kept_up.map_or("none".into(), |k| format!("{k:.3}")),
        t.skipped,
        result
            .host_cpu_percent
            .map_or("none".into(), |c| format!("{c:.0}")),
        meets(result, budget)
    );
}

/// Where the steady state's frames spent their time, stage by stage, and
/// `infer0`'s batches: after [`print_table`] and its `LIVE` line.
pub fn print_stages(streams: usize, result: &LiveResult) {
    let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
    let us = |v: u64| format!("{:.2}", v as f64 / 1e3);
    println!();
    println!(
        "#### stages, {streams} streams (steady state, {:.1} s; all streams' inferred frames; {} skipped for overload)",
        result.seconds, result.total.skipped
    );
    println!("| stage | p50 ms | p99 ms | frames or batches |");
    println!("|---|---:|---:|---:|");
    for s in &result.stages {
        println!(
            "| {} | {} | {} | {} |",
            s.name,
            ms(s.p50_ms),
            ms(s.p99_ms),
            s.frames
        );
    }
    if let Some(b) = &result.batch {
        println!(
            "| batch wait (infer0's session: oldest frame queued → run starts) | {} | {} | {} |",
            us(b.wait_p50_us),
            us(b.wait_p99_us),
            b.batches
        );
        println!(
            "| batch run (model run with output decoding) | {} | {} | {} |",
            us(b.run_p50_us),
            us(b.run_p99_us),
            b.batches
        );
        if let (Some(p50), Some(p99)) = (b.gap_p50_us, b.gap_p99_us) {
            println!(
                "| between runs (a session idle while a frame waited) | {} | {} | {} |",
                us(p50),
                us(p99),
                b.batches
            );
        }
    }
    if result.stages.is_empty() {
        println!("| (no frame reached a sink in the steady state) | | | |");
    }
    match &result.batch {
        Some(b) => println!(
            "mean batch size {:.2} over infer0's session's last {} batches",
            b.mean_size, b.batches
        ),
        None if result.stages.iter().any(|s| s.name.starts_with("trtinfer")) => {
            println!("no batch timing: infer0 has no batch-timing property, or it was null")
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrivals at `rate` a second for `seconds`, starting at `at`.
    fn steady(at: Instant, rate: f64, seconds: f64) -> Vec<Instant> {
        let n = (rate * seconds) as u32;
        (0..n)
            .map(|k| at + Duration::from_secs_f64(k as f64 / rate))
            .collect()
    }

    #[test]
    fn caught_up_after_the_backlog() {
        let t0 = Instant::now();
        // 3 s of catching up at 3,500 frames/s, then 10 s at the sources'
        // 2,400: the steady state begins at the end of the first window
        // that is back to the sources' rate.
        let mut arrivals = steady(t0, 3500.0, 3.0);
        arrivals.extend(steady(t0 + Duration::from_secs(3), 2400.0, 10.0));
        let until = t0 + Duration::from_secs(13);
        let back = caught_up(&arrivals, t0, until, 2400.0).expect("it caught up");
        let after = (back - t0).as_secs_f64();
        assert!((3.9..=4.3).contains(&after), "caught up at {after} s");
        // Looking from later on: at once, one window on.
        let back = caught_up(&arrivals, t0 + Duration::from_secs(5), until, 2400.0).unwrap();
        assert!(((back - t0).as_secs_f64() - 6.0).abs() < 1e-6);
    }

    #[test]
    fn still_catching_up_is_no_steady_state() {
        let t0 = Instant::now();
        // Above the sources' rate until 2 s before the end.
        let mut arrivals = steady(t0, 3500.0, 9.0);
        arrivals.extend(steady(t0 + Duration::from_secs(9), 2400.0, 1.5));
        let until = t0 + Duration::from_millis(10_500);
        assert_eq!(caught_up(&arrivals, t0, until, 2400.0), None);
    }

    #[test]
    fn a_pipeline_below_the_rate_is_caught_by_kept_up_not_here() {
        // Slower than the sources is "back to their rate" at once: the
        // delivered share (KEPT_UP) is what fails such a run.
        let t0 = Instant::now();
        let arrivals = steady(t0, 1000.0, 10.0);
        let back = caught_up(&arrivals, t0, t0 + Duration::from_secs(10), 2400.0).unwrap();
        assert!(((back - t0).as_secs_f64() - 1.0).abs() < 1e-6);
    }
}
