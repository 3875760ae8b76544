//! Throughput, latency and PCIe traffic of the GPU pipeline beside
//! decode-only, in one run on one machine.
//!
//!   pipeline_bench MEDIA MODEL [--streams N,...] [--loops K] [--modes decode,full,full-queued,download,preprocess]
//!                  [--infer "PROP=VALUE ..."] [--plot FILE.png] [--gpus 0,1]
//!                  [--live [--latency-ms MS] [--seconds S]
//!                          [--find-capacity [--max-runs K] [--budget-s S]]]
//!                  [--decoder ELEMENT] [--variant "NAME:PROP=VALUE ..."]...
//!
//! `--infer` adds properties to every trtinfer (say `tf32=true`);
//! `--variant` (repeatable, not with `--live`) runs each `full*` mode once per
//! variant, its properties after `--infer`'s (so `model=OTHER.onnx` replaces
//! MODEL), the rows named `full NAME`: precision or graph variants measured
//! in one run beside one decode-only;
//! `--plot` writes aggregate fps against N for each mode as a PNG.
//! `--gpus 0,1` spreads the streams round-robin over those CUDA devices,
//! each with its device's decoder (`nvh264dec` on the first,
//! `nvh264device1dec` … as the registry names them) and `cudapreprocess
//! device-id=D ! trtinfer device-id=D`.
//! `--live` plays every stream at its real frame rate instead (see
//! common/live.rs): per N, a table per GPU of frames delivered, decoded,
//! lost and late, source-to-sink latency, NVDEC and SM utilisation, and the
//! start-up time apart; `--latency-ms` is the latency budget (default 100),
//! `--seconds` stops a run early. Live trtinfers get `overload=block`
//! before `--infer`'s properties: every frame is inferred, and a frame
//! passed on uninferred for overload (`--infer overload=skip`) fails the
//! run (`skipped=` in the `LIVE` line). After each table, a stage table: the
//! steady state's p50 and p99 (ms, all streams) from the decoder's src pad
//! to cudapreprocess's src pad, on to trtinfer's sink pad (where the frame
//! joins the shared batcher), to trtinfer's src pad (batch wait, run and
//! putting the frames back in order), to the sink, and decoder→sink, each
//! frame found again at every pad by its PTS; then `infer0`'s
//! `batch-timing` (its session's last batches: wait and run p50/p99, mean
//! batch size), read before the pipeline stops.
//! `--find-capacity` (with `--live`; `--streams LO,HI`, two values, the
//! bounds) bisects, for each of `--modes` (default `decode,full`), the
//! largest N in LO..=HI that passes, each N its own run, at most
//! `--max-runs` (default 7) runs a mode; `--budget-s` shares that many
//! seconds between the modes and starts no run that would not end in its
//! mode's share (so an outer `timeout` still gets the results). It prints
//! every run's tables, then per mode a table of the N tried and a line
//! `CAPACITY mode=M streams=N first_fail=F runs=R exact=B` (N = 0 when none
//! passed; F = none when HI passed; not exact: the capacity is N..F-1),
//! `CAPACITY ratio=full/decode=R`, and the stage tables of the full
//! pipeline at its capacity and at N=64 when 64 was among its runs.
//! `--decoder` replaces
//! the NVIDIA decoder (`avdec_h264` tries the benchmark without a GPU, with
//! `--infer providers=cpu`).
//!
//! Modes (each with N concurrent branches, each branch decoding MEDIA K times):
//! - `decode`:   filesrc ! qtdemux ! h264parse ! nvh264dec ! fakesink
//! - `full`:     ... ! nvh264dec ! cudapreprocess ! trtinfer providers=cuda ! fakesink
//! - `full-queued`: the same with a queue after the decoder, so decoding
//!   overlaps inference
//! - `download`: ... ! nvh264dec ! cudadownload ! fakesink (what copying each
//!   frame to the host costs on the bus, for comparison)
//! - `preprocess`: ... ! nvh264dec ! cudapreprocess width=416 height=416 !
//!   fakesink (what the tensors cost without inference)
//!
//! fps counts frames between the first and the last frame reaching the
//! sinks (model loading excluded). Latency is what cudapreprocess and trtinfer
//! add to each frame (cudapreprocess sink pad to trtinfer src pad). PCIe
//! traffic and GPU memory come from NVML, sampled every 20 ms: counters of
//! the GPU, outside our code.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/fps_plot.rs"]
mod fps_plot;

#[path = "common/nvml.rs"]
mod nvml;
use nvml::Nvml;

#[path = "common/live.rs"]
mod live;

#[path = "common/capacity.rs"]
mod capacity;

use gstcudainfer::cuda::placement;

/// NVML samples integrated over a run.
#[derive(Default, Clone, Copy)]
struct BusTotals {
    to_gpu_mb: f64,
    from_gpu_mb: f64,
    peak_memory_mib: f64,
    /// CPU cores this process kept busy, on average.
    cpu_cores: f64,
}

/// One sample: when, what it covers (seconds), NVML's KB/s each way and
/// memory, and this process's CPU time.
struct BusSample {
    at: Instant,
    dt: f64,
    to_gpu: u32,
    from_gpu: u32,
    used_mib: f64,
    /// This process's CPU time so far, in seconds.
    cpu_s: f64,
}

/// User plus system CPU time of this process (all threads), in seconds.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: utime is the 12th, stime the 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    // The kernel reports USER_HZ ticks, 100 a second on Linux.
    ticks / 100.0
}

fn sample_bus(nvml: Arc<Nvml>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<BusSample>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            let (to_gpu, from_gpu) = nvml.pcie_kb_per_s();
            let at = Instant::now();
            samples.push(BusSample {
                at,
                dt: (at - last).as_secs_f64(),
                to_gpu,
                from_gpu,
                used_mib: nvml.used_memory_bytes() as f64 / (1024.0 * 1024.0),
                cpu_s: process_cpu_seconds(),
            });
            last = at;
        }
        samples
    })
}

/// Traffic while frames flowed (model loading and start-up excluded, as
/// for fps).
fn integrate(samples: &[BusSample], first: Instant, last: Instant) -> BusTotals {
    let mut t = BusTotals::default();
    let window: Vec<&BusSample> = samples
        .iter()
        .filter(|s| s.at > first && s.at <= last)
        .collect();
    if let (Some(a), Some(b)) = (window.first(), window.last()) {
        let span = (b.at - a.at).as_secs_f64();
        if span > 0.0 {
            t.cpu_cores = (b.cpu_s - a.cpu_s) / span;
        }
    }
    for s in window {
        t.to_gpu_mb += s.to_gpu as f64 * s.dt / 1024.0;
        t.from_gpu_mb += s.from_gpu as f64 * s.dt / 1024.0;
        t.peak_memory_mib = t.peak_memory_mib.max(s.used_mib);
    }
    t
}

struct Args {
    media: String,
    model: String,
    streams: Vec<usize>,
    loops: usize,
    modes: Vec<String>,
    infer_properties: String,
    /// (name, trtinfer properties) of each `--variant`, in order.
    variants: Vec<(String, String)>,
    plot: Option<std::path::PathBuf>,
    /// CUDA devices the streams are spread over.
    gpus: Vec<u32>,
    live: bool,
    latency_ms: u64,
    seconds: Option<u64>,
    /// Replaces the NVIDIA decoder of every device.
    decoder: Option<String>,
    /// Live: bisect the largest N between the two `streams`.
    find_capacity: bool,
    /// Runs per mode of a capacity search.
    max_runs: usize,
    /// Wall-clock seconds for the whole capacity search.
    budget_s: Option<u64>,
}

impl Args {
    /// The device of stream `i` of `streams`.
    fn device(&self, streams: usize, i: usize) -> u32 {
        placement::spread(streams, &self.gpus)[i]
    }

    fn decoder(&self, device: u32) -> String {
        self.decoder
            .clone()
            .unwrap_or_else(|| placement::decoder_for_device("h264", device))
    }
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let usage = "usage: pipeline_bench MEDIA MODEL [--streams 1,2,...] [--loops K] \
                 [--modes decode,full,full-queued,download,preprocess] [--infer \"PROP=VALUE ...\"] [--plot FILE.png] \
                 [--gpus 0,1] [--live [--latency-ms MS] [--seconds S] \
                 [--find-capacity [--max-runs K] [--budget-s S]]] [--decoder ELEMENT] \
                 [--variant \"NAME:PROP=VALUE ...\"]...";
    let media = it.next().expect(usage);
    let model = it.next().expect(usage);
    let mut args = Args {
        media,
        model,
        streams: vec![1],
        loops: 1,
        modes: ["decode", "full", "full-queued", "download"]
            .map(String::from)
            .to_vec(),
        infer_properties: String::new(),
        variants: Vec::new(),
        plot: None,
        gpus: vec![0],
        live: false,
        latency_ms: 100,
        seconds: None,
        decoder: None,
        find_capacity: false,
        max_runs: 7,
        budget_s: None,
    };
    let mut modes_set = false;
    while let Some(flag) = it.next() {
        if flag == "--live" {
            args.live = true;
            continue;
        }
        if flag == "--find-capacity" {
            args.find_capacity = true;
            continue;
        }
        let value = it.next().expect(usage);
        match flag.as_str() {
            "--streams" => {
                args.streams = value.split(',').map(|v| v.parse().expect(usage)).collect()
            }
            "--loops" => args.loops = value.parse().expect(usage),
            "--modes" => {
                modes_set = true;
                args.modes = value.split(',').map(str::to_string).collect()
            }
            "--gpus" => args.gpus = value.split(',').map(|v| v.parse().expect(usage)).collect(),
            "--latency-ms" => args.latency_ms = value.parse().expect(usage),
            "--seconds" => args.seconds = Some(value.parse().expect(usage)),
            "--max-runs" => args.max_runs = value.parse().expect(usage),
            "--budget-s" => args.budget_s = Some(value.parse().expect(usage)),
            "--decoder" => args.decoder = Some(value),
            "--infer" => args.infer_properties = value,
            "--variant" => {
                let (name, properties) = value.split_once(':').expect(usage);
                args.variants
                    .push((name.to_string(), properties.to_string()));
            }
            "--plot" => args.plot = Some(value.into()),
            _ => panic!("{usage}"),
        }
    }
    // Live: the pipeline with inference unless asked otherwise; a capacity
    // search compares it with decoding alone.
    if args.live && !modes_set {
        args.modes = if args.find_capacity {
            vec!["decode".into(), "full".into()]
        } else {
            vec!["full".into()]
        };
    }
    if args.find_capacity {
        let bounds_ok = matches!(args.streams[..], [lo, hi] if 1 <= lo && lo <= hi);
        if !args.live || !bounds_ok || args.max_runs == 0 {
            eprintln!(
                "--find-capacity needs --live and --streams LO,HI (1 <= LO <= HI), the bounds of the \
                 search, and --max-runs of at least 1"
            );
            std::process::exit(2);
        }
    }
    if args.live && !args.variants.is_empty() {
        eprintln!("--variant is for the throughput runs, not --live: run --live once per variant");
        std::process::exit(2);
    }
    args
}

/// The (name, extra trtinfer properties) runs of `mode`: every variant for
/// the modes with inference, else one unnamed run.
fn variants_of(args: &Args, mode: &str) -> Vec<(String, String)> {
    if mode.starts_with("full") && !args.variants.is_empty() {
        args.variants.clone()
    } else {
        vec![(String::new(), String::new())]
    }
}

/// One branch of `streams`: MEDIA decoded `loops` times in a row (concat),
/// then the mode's elements, on the stream's device. Live: a live appsrc
/// that common/live.rs feeds with the clip's frames, looped, paced to the
/// clock before the decoder, into a sink that does not synchronise.
/// `variant` adds trtinfer properties after `--infer`'s.
fn branch(args: &Args, mode: &str, variant: &str, streams: usize, i: usize) -> String {
    // Named so that the live stage probes find them.
    let device = args.device(streams, i);
    // Live, trtinfer would by default pass frames on uninferred once
    // inference falls behind: the benchmark measures what it takes to infer
    // every frame (`--infer overload=skip` still chooses otherwise).
    let overload = if args.live { "overload=block " } else { "" };
    let infer = format!(
        "cudapreprocess name=pre{i} device-id={device} ! trtinfer name=infer{i} model={} \
         providers=cuda device-id={device} {overload}{} {variant}",
        args.model, args.infer_properties
    );
    let tail = match mode {
        "decode" => String::new(),
        "full" => format!(" ! {infer}"),
        "full-queued" => format!(" ! queue ! {infer}"),
        "preprocess" => format!(" ! cudapreprocess name=pre{i} width=416 height=416"),
        "download" => " ! cudadownload ! video/x-raw".into(),
        other => panic!("unknown mode {other}"),
    };
    let (pace, sink): (String, String) = if args.live {
        (
            format!("identity name=pace{i} sync=true ! "),
            format!("fakesink name=sink{i} sync=false"),
        )
    } else {
        (String::new(), format!("fakesink name=sink{i} sync=false"))
    };
    let decoder = args.decoder(device);
    if args.live {
        // common/live.rs feeds src{i} the clip's frames, looped.
        return format!(
            "appsrc name=src{i} ! {pace}h264parse ! {decoder} name=dec{i}{tail} ! {sink}"
        );
    }
    let file = format!("filesrc location={} ! qtdemux ! h264parse", args.media);
    let files: String = (0..args.loops)
        .map(|_| format!(" {file} ! c{i}."))
        .collect();
    format!("concat name=c{i} ! {pace}{decoder} name=dec{i}{tail} ! {sink}{files}")
}

struct RunResult {
    frames: u64,
    seconds: f64,
    latencies_ms: Vec<f64>,
    bus: Option<BusTotals>,
    /// trtinfer's largest-batch, where there is a trtinfer.
    largest_batch: Option<u32>,
}

/// Frame arrival times at the sinks: first, last, count.
#[derive(Default)]
struct Arrivals {
    first: Option<Instant>,
    last: Option<Instant>,
    frames: u64,
}

fn run(
    args: &Args,
    (mode, variant): (&str, &str),
    streams: usize,
    nvml: Option<Arc<Nvml>>,
) -> RunResult {
    let description: Vec<String> = (0..streams)
        .map(|i| branch(args, mode, variant, streams, i))
        .collect();
    let pipeline = gst::parse::launch(&description.join("  "))
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .unwrap();
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    for i in 0..streams {
        let sink = pipeline.by_name(&format!("sink{i}")).unwrap();
        let a = arrivals.clone();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                let now = Instant::now();
                let mut a = a.lock().unwrap();
                a.first.get_or_insert(now);
                a.last = Some(now);
                a.frames += 1;
                gst::PadProbeReturn::Ok
            });
        if mode.starts_with("full") {
            // In-place elements keep order: a FIFO pairs entry and exit.
            let entered = Arc::new(Mutex::new(VecDeque::new()));
            let e = entered.clone();
            let pre = pipeline.by_name(&format!("pre{i}")).unwrap();
            pre.static_pad("sink")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    e.lock().unwrap().push_back(Instant::now());
                    gst::PadProbeReturn::Ok
                });
            let l = latencies.clone();
            let infer = pipeline.by_name(&format!("infer{i}")).unwrap();
            infer
                .static_pad("src")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    if let Some(t) = entered.lock().unwrap().pop_front() {
                        l.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    gst::PadProbeReturn::Ok
                });
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = nvml.map(|n| sample_bus(n, stop.clone()));
    pipeline.set_state(gst::State::Playing).expect("start");
    let bus = pipeline.bus().unwrap();
    let mut last_report = Instant::now();
    loop {
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(500),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => break,
            Some(gst::MessageView::Error(e)) => {
                panic!("{mode} x{streams}: {} ({:?})", e.error(), e.debug())
            }
            _ => {}
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!(
                "  {mode} x{streams}: {} frames",
                arrivals.lock().unwrap().frames
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.map(|s| s.join().unwrap());
    let largest_batch = pipeline
        .by_name("infer0")
        .map(|infer| infer.property::<u32>("largest-batch"));
    pipeline.set_state(gst::State::Null).unwrap();
    let a = arrivals.lock().unwrap();
    let (seconds, bus_totals) = match (a.first, a.last) {
        (Some(f), Some(l)) => ((l - f).as_secs_f64(), samples.map(|s| integrate(&s, f, l))),
        _ => (0.0, None),
    };
    let latencies_ms = std::mem::take(&mut *latencies.lock().unwrap());
    RunResult {
        frames: a.frames,
        seconds,
        latencies_ms,
        bus: bus_totals,
        largest_batch,
    }
}

use live::percentile;

/// What every live run of an invocation shares.
struct LiveContext {
    clip: Arc<live::Clip>,
    period: Duration,
    nvml: std::collections::HashMap<u32, Arc<Nvml>>,
    budget: Duration,
}

impl LiveContext {
    /// Reads the clip and opens NVML; prints the header of the output.
    fn open(args: &Args) -> LiveContext {
        let (clip, period) = live::read_clip(&args.media)
            .and_then(|c| Ok((c.frame_period()?, c)))
            .map(|(period, clip)| (Arc::new(clip), period))
            .unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(1);
            });
        let nvml: std::collections::HashMap<u32, Arc<Nvml>> = args
            .gpus
            .iter()
            .filter_map(|&d| Nvml::open_device(d).map(|n| (d, Arc::new(n))))
            .collect();
        if nvml.is_empty() {
            eprintln!("NVML not available: no utilisation columns");
        }
        println!(
            "## live: {} at {:.2} fps per stream, latency budget {} ms, GPUs {:?} (decoders {})",
            args.media,
            1.0 / period.as_secs_f64(),
            args.latency_ms,
            args.gpus,
            args.gpus
                .iter()
                .map(|&d| args.decoder(d))
                .collect::<Vec<_>>()
                .join(", ")
        );
        LiveContext {
            clip,
            period,
            nvml,
            budget: Duration::from_millis(args.latency_ms),
        }
    }

    /// One live run of `mode` with `streams` streams; prints its tables
    /// (or why it failed) and returns it with its verdict.
    fn run(&self, args: &Args, mode: &str, streams: usize) -> Option<(live::LiveResult, bool)> {
        eprintln!("live {mode} with {streams} stream(s)...");
        let setup = live::LiveSetup {
            clip: self.clip.clone(),
            loops: args.loops,
            branches: (0..streams)
                .map(|i| branch(args, mode, "", streams, i))
                .collect(),
            devices: (0..streams).map(|i| args.device(streams, i)).collect(),
            latency: self.budget,
            period: self.period,
            limit: args.seconds.map(Duration::from_secs),
            nvml: &self.nvml,
        };
        let outcome = match live::run_live(&setup) {
            Ok(result) => {
                println!("\nmode {mode}:");
                live::print_table(streams, &result, self.budget);
                live::print_stages(streams, &result);
                let passed = live::meets(&result, self.budget);
                Some((result, passed))
            }
            Err(e) => {
                println!("\nmode {mode}, {streams} streams: FAILED: {e}");
                println!("LIVE streams={streams} pass=false error");
                None
            }
        };
        // Results come before the run ends: a script's `timeout` keeps them.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        outcome
    }
}

/// `--live`: one run per N and mode, a table each.
fn main_live(args: &Args) {
    let ctx = LiveContext::open(args);
    let mut best: Option<usize> = None;
    for mode in &args.modes {
        for &streams in &args.streams {
            if let Some((_, true)) = ctx.run(args, mode, streams) {
                best = best.max(Some(streams));
            }
        }
    }
    println!(
        "\nLIVE BEST {}",
        best.map_or("none".into(), |b| b.to_string())
    );
}

/// One N of a capacity search: its verdict and, where it ran, its result.
struct Tried {
    streams: usize,
    passed: bool,
    result: Option<live::LiveResult>,
}

/// `--live --find-capacity`: per mode, the largest N in LO..=HI that
/// passes, by bisection ([`capacity::bisect`]).
fn main_capacity(args: &Args) {
    let ctx = LiveContext::open(args);
    let (lo, hi) = (args.streams[0], args.streams[1]);
    println!(
        "## capacity search: modes {}, N in {lo}..={hi}, at most {} runs a mode{}{}",
        args.modes.join(", "),
        args.max_runs,
        args.seconds
            .map_or(String::new(), |s| format!(", each at most {s} s")),
        args.budget_s
            .map_or(String::new(), |b| format!(", {b} s in all"))
    );
    let started = Instant::now();
    // The longest run so far: what the next one is expected to take.
    let mut longest = Duration::from_secs(args.seconds.unwrap_or(0));
    let mut found: Vec<(String, capacity::Search, Vec<Tried>)> = Vec::new();
    let modes = args.modes.len() as u32;
    for (m, mode) in args.modes.iter().enumerate() {
        // Each mode's share of the budget; what one leaves goes to the next.
        let deadline = args
            .budget_s
            .map(|b| started + Duration::from_secs(b) * (m as u32 + 1) / modes);
        let mut tried: Vec<Tried> = Vec::new();
        let search = capacity::bisect(lo, hi, args.max_runs, |n| {
            if deadline.is_some_and(|d| Instant::now() + longest > d) {
                eprintln!("capacity {mode}: no time left for a run of {n} streams");
                return None;
            }
            let at = Instant::now();
            let outcome = ctx.run(args, mode, n);
            longest = longest.max(at.elapsed());
            let passed = outcome.as_ref().is_some_and(|o| o.1);
            eprintln!(
                "capacity {mode}: {n} streams {}",
                if passed { "PASS" } else { "FAIL" }
            );
            tried.push(Tried {
                streams: n,
                passed,
                result: outcome.map(|o| o.0),
            });
            Some(passed)
        });
        print_search(mode, &search, &tried);
        found.push((mode.clone(), search, tried));
    }
    let capacity_of = |mode: &str| {
        found
            .iter()
            .find(|f| f.0 == mode)
            .map(|f| f.1.capacity.unwrap_or(0))
    };
    if let (Some(decode), Some(full)) = (capacity_of("decode"), capacity_of("full")) {
        println!(
            "CAPACITY ratio=full/decode={}",
            if decode > 0 {
                format!("{:.3}", full as f64 / decode as f64)
            } else {
                "none".into()
            }
        );
    }
    let Some((_, search, tried)) = found.iter().find(|f| f.0 == "full") else {
        return;
    };
    let result_at = |n: usize| {
        tried
            .iter()
            .find(|t| t.streams == n)
            .and_then(|t| t.result.as_ref())
    };
    println!();
    match search.capacity.and_then(|n| Some((n, result_at(n)?))) {
        Some((n, result)) => {
            println!("### the full pipeline at its capacity, {n} streams (its last passing run)");
            live::print_stages(n, result);
        }
        None => println!("### the full pipeline passed at no N: no stage table at its capacity"),
    }
    println!();
    match result_at(64) {
        Some(result) => {
            println!("### the full pipeline at 64 streams");
            live::print_stages(64, result);
        }
        None => println!(
            "### the full pipeline at 64 streams: not among its runs (run --live --streams 64 for its stage table)"
        ),
    }
}

/// A mode's runs, then its `CAPACITY` line.
fn print_search(mode: &str, search: &capacity::Search, tried: &[Tried]) {
    let ms = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
    println!();
    println!("### capacity, mode {mode}: the N tried, in order");
    println!(
        "| N | verdict | decoder→sink p99 ms | lost | late | skipped | delivered / real rate | steady state s |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for t in tried {
        match &t.result {
            Some(r) => println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                t.streams,
                if t.passed { "PASS" } else { "FAIL" },
                ms(r.total.p99_ms),
                r.total.lost,
                r.total.late,
                r.total.skipped,
                r.total.kept_up.map_or(String::new(), |k| format!("{k:.3}")),
                r.seconds
            ),
            None => println!("| {} | FAIL (error, see above) | | | | | | |", t.streams),
        }
    }
    println!(
        "CAPACITY mode={mode} streams={} first_fail={} runs={} exact={}",
        search.capacity.unwrap_or(0),
        search.first_fail.map_or("none".into(), |f| f.to_string()),
        search.tried.len(),
        search.exact
    );
}

fn main() {
    let args = parse_args();
    gst::init().unwrap();
    gstcudainfer::plugin_register_static().unwrap();
    if args.find_capacity {
        return main_capacity(&args);
    }
    if args.live {
        return main_live(&args);
    }
    let nvml = Nvml::open().map(Arc::new);
    if nvml.is_none() {
        eprintln!("NVML not available: no PCIe or memory columns");
    }
    println!(
        "decoders: {}",
        args.gpus
            .iter()
            .map(|&d| format!("GPU {d} {}", args.decoder(d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| mode | streams | frames | seconds | fps | fps / decode-only | added latency p50 ms | p99 ms | largest batch | PCIe to GPU MB/frame | from GPU MB/frame | GPU memory MiB | CPU cores busy |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // (mode, variant name, variant properties) of each row of one N.
    let rows: Vec<(String, String, String)> = args
        .modes
        .iter()
        .flat_map(|mode| {
            variants_of(&args, mode)
                .into_iter()
                .map(|(name, properties)| (mode.clone(), name, properties))
        })
        .collect();
    let runs = args.streams.len() * rows.len();
    // The plot's points of each row, (N, fps).
    let mut fps_by_row: Vec<Vec<(u32, f64)>> = vec![Vec::new(); rows.len()];
    for (n, &streams) in args.streams.iter().enumerate() {
        let mut decode_fps = None;
        for (m, (mode, name, properties)) in rows.iter().enumerate() {
            let row = if name.is_empty() {
                mode.clone()
            } else {
                format!("{mode} {name}")
            };
            eprintln!(
                "[{}/{runs}] {row} with {streams} stream(s)...",
                n * rows.len() + m + 1
            );
            let r = run(&args, (mode, properties), streams, nvml.clone());
            // Frames between the first and the last arrival.
            let fps = (r.frames.saturating_sub(1)) as f64 / r.seconds.max(1e-9);
            let per_frame = (r.frames.saturating_sub(1)).max(1) as f64;
            if mode == "decode" {
                decode_fps = Some(fps);
            }
            fps_by_row[m].push((streams as u32, fps));
            let mut lat = r.latencies_ms;
            lat.sort_by(f64::total_cmp);
            let ratio = decode_fps.map_or("".into(), |d| format!("{:.3}", fps / d));
            let (to, from, mem, cpu) = r.bus.map_or(Default::default(), |b| {
                (
                    format!("{:.3}", b.to_gpu_mb / per_frame),
                    format!("{:.3}", b.from_gpu_mb / per_frame),
                    format!("{:.0}", b.peak_memory_mib),
                    format!("{:.1}", b.cpu_cores),
                )
            });
            let ms = |p| percentile(&lat, p).map_or(String::new(), |v| format!("{v:.2}"));
            let batch = r.largest_batch.map_or(String::new(), |b| b.to_string());
            println!(
                "| {row} | {streams} | {} | {:.2} | {fps:.1} | {ratio} | {} | {} | {batch} | {to} | {from} | {mem} | {cpu} |",
                r.frames,
                r.seconds,
                ms(0.5),
                ms(0.99),
            );
        }
    }
    if let Some(path) = &args.plot {
        let labels: Vec<String> = rows
            .iter()
            .map(|(mode, name, _)| match name.as_str() {
                "" => mode_label(mode).to_string(),
                name => format!("{} ({name})", mode_label(mode)),
            })
            .collect();
        let series: Vec<fps_plot::Series> = fps_by_row
            .iter()
            .zip(&labels)
            .map(|(points, label)| fps_plot::Series {
                label,
                points: points.clone(),
            })
            .collect();
        let title = format!(
            "{} on one GPU: aggregate fps against concurrent streams",
            std::path::Path::new(&args.media)
                .file_name()
                .map_or(args.media.clone(), |f| f.to_string_lossy().into_owned())
        );
        match fps_plot::write_png(path, &title, &series) {
            Ok(()) => eprintln!("plot written to {}", path.display()),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// What a mode's line is called in the plot.
fn mode_label(mode: &str) -> &str {
    match mode {
        "decode" => "decode only (nvh264dec ! fakesink)",
        "full" => "nvh264dec ! cudapreprocess ! trtinfer",
        "full-queued" => "nvh264dec ! queue ! cudapreprocess ! trtinfer",
        "download" => "nvh264dec ! cudadownload",
        "preprocess" => "nvh264dec ! cudapreprocess",
        other => other,
    }
}
