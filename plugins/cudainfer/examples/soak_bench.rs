//! Soak: N streams of MEDIA, each looped (a flushing seek back to the start
//! at every end of stream) through `cudapreprocess ! trtinfer` for a set
//! time, with the process's RSS and the GPU's memory sampled along the way.
//! Every stream is a pipeline of its own in this one process, so all share
//! one session and batch together.
//!
//!   soak_bench MEDIA MODEL [--streams 16] [--seconds 600] [--sample-seconds 5]
//!              [--warm-up-seconds 60] [--cpu] [--infer "PROP=VALUE ..."]
//!              [--csv FILE] [--plot FILE.png]
//!   soak_bench --plot-csv FILE --plot FILE.png [--title TEXT]
//!
//! GPU (default): nvh264dec, `providers=cuda`; `--cpu`: avdec_h264 and the
//! cpu provider. Prints a summary table (memory after warm-up: lowest,
//! highest, growth) and exits non-zero if a stream fails. `--plot-csv`
//! redraws a CSV (seconds or frames, rss_mib, gpu_mib) as a PNG.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;

#[path = "common/fps_plot.rs"]
mod fps_plot;
#[path = "common/nvml.rs"]
mod nvml;

struct Args {
    media: String,
    model: String,
    streams: usize,
    seconds: u64,
    sample: u64,
    warm_up: u64,
    cpu: bool,
    infer: String,
    csv: Option<PathBuf>,
    plot: Option<PathBuf>,
    plot_csv: Option<PathBuf>,
    title: Option<String>,
}

fn parse_args() -> Args {
    let usage = "usage: soak_bench MEDIA MODEL [--streams N] [--seconds S] [--sample-seconds S] \
                 [--warm-up-seconds S] [--cpu] [--infer PROPS] [--csv FILE] [--plot FILE.png] | \
                 soak_bench --plot-csv FILE --plot FILE.png [--title TEXT]";
    let mut args = Args {
        media: String::new(),
        model: String::new(),
        streams: 16,
        seconds: 600,
        sample: 5,
        warm_up: 60,
        cpu: false,
        infer: String::new(),
        csv: None,
        plot: None,
        plot_csv: None,
        title: None,
    };
    let mut positional = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().expect(usage);
        match a.as_str() {
            "--streams" => args.streams = value().parse().expect(usage),
            "--seconds" => args.seconds = value().parse().expect(usage),
            "--sample-seconds" => args.sample = value().parse().expect(usage),
            "--warm-up-seconds" => args.warm_up = value().parse().expect(usage),
            "--cpu" => args.cpu = true,
            "--infer" => args.infer = value(),
            "--csv" => args.csv = Some(value().into()),
            "--plot" => args.plot = Some(value().into()),
            "--plot-csv" => args.plot_csv = Some(value().into()),
            "--title" => args.title = Some(value()),
            _ => positional.push(a),
        }
    }
    if args.plot_csv.is_none() {
        let [media, model] = <[String; 2]>::try_from(positional).expect(usage);
        (args.media, args.model) = (media, model);
    }
    args
}

/// The process's resident set, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

struct Sample {
    seconds: f64,
    frames: u64,
    rss_mib: f64,
    gpu_mib: f64,
}

/// Draws the samples of a CSV written by a run (first column seconds or
/// frames, then rss_mib and gpu_mib).
fn plot(path: &std::path::Path, title: &str, x_desc: &str, rows: &[(f64, f64, f64)]) {
    let rss: Vec<(f64, f64)> = rows.iter().map(|r| (r.0, r.1)).collect();
    let gpu: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.2 > 0.0)
        .map(|r| (r.0, r.2))
        .collect();
    let mut series = vec![("process RSS (MiB)", rss)];
    if !gpu.is_empty() {
        series.push(("GPU memory used (MiB)", gpu));
    }
    match fps_plot::write_lines_png(path, title, (x_desc, "MiB"), &series) {
        Ok(()) => eprintln!("plot written to {}", path.display()),
        Err(e) => eprintln!("no plot: {e}"),
    }
}

fn replot(args: &Args) {
    let csv = args.plot_csv.as_ref().unwrap();
    let text = std::fs::read_to_string(csv).expect("readable CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let rows: Vec<(f64, f64, f64)> = lines
        .filter_map(|l| {
            let v: Vec<f64> = l.split(',').filter_map(|x| x.parse().ok()).collect();
            let at = |name: &str| {
                header
                    .iter()
                    .position(|h| *h == name)
                    .and_then(|i| v.get(i).copied())
            };
            Some((
                v[0],
                at("rss_mib").or_else(|| at("rss_kib").map(|k| k / 1024.0))?,
                at("gpu_mib").unwrap_or(0.0),
            ))
        })
        .collect();
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| csv.display().to_string());
    plot(
        args.plot.as_ref().expect("--plot"),
        &title,
        header[0],
        &rows,
    );
}

fn main() {
    let args = parse_args();
    if args.plot_csv.is_some() {
        return replot(&args);
    }
    gst::init().unwrap();
    gstcudainfer::plugin_register_static().unwrap();
    let (decode, providers) = if args.cpu {
        ("avdec_h264 ! videoconvert", "cpu")
    } else {
        ("nvh264dec", "cuda")
    };
    let frames = Arc::new(AtomicU64::new(0));
    let loops = Arc::new(AtomicUsize::new(0));
    let pipelines: Vec<gst::Pipeline> = (0..args.streams)
        .map(|i| {
            let p = gst::parse::launch(&format!(
                "filesrc location={} ! qtdemux ! h264parse ! {decode} ! cudapreprocess \
                 ! trtinfer model={} providers={providers} {} ! fakesink name=sink{i} sync=false",
                args.media, args.model, args.infer
            ))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
            let counter = frames.clone();
            p.by_name(&format!("sink{i}"))
                .unwrap()
                .static_pad("sink")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
            p
        })
        .collect();
    let started = Instant::now();
    for p in &pipelines {
        p.set_state(gst::State::Playing).expect("the stream starts");
    }
    let nvml = nvml::Nvml::open();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = started;
    let mut failure = None;
    while Instant::now() < deadline && failure.is_none() {
        for p in &pipelines {
            let bus = p.bus().unwrap();
            while let Some(msg) =
                bus.pop_filtered(&[gst::MessageType::Eos, gst::MessageType::Error])
            {
                match msg.view() {
                    gst::MessageView::Eos(_) => {
                        // Loop: back to the start, as an operator's seek.
                        loops.fetch_add(1, Ordering::Relaxed);
                        p.seek_simple(
                            gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                            gst::ClockTime::ZERO,
                        )
                        .expect("the stream seeks back");
                    }
                    gst::MessageView::Error(e) => {
                        failure = Some(format!("{}: {}", p.name(), e.error()));
                    }
                    _ => {}
                }
            }
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(args.sample);
            samples.push(Sample {
                seconds: started.elapsed().as_secs_f64(),
                frames: frames.load(Ordering::Relaxed),
                rss_mib: rss_mib(),
                gpu_mib: nvml
                    .as_ref()
                    .map_or(0.0, |n| n.used_memory_bytes() as f64 / (1024.0 * 1024.0)),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
    if let Some(csv) = &args.csv {
        let text: String = samples
            .iter()
            .map(|s| {
                format!(
                    "{:.1},{},{:.1},{:.1}\n",
                    s.seconds, s.frames, s.rss_mib, s.gpu_mib
                )
            })
            .collect();
        std::fs::write(csv, format!("seconds,frames,rss_mib,gpu_mib\n{text}"))
            .expect("CSV written");
    }
    let settled: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.seconds >= args.warm_up as f64)
        .collect();
    let range = |f: &dyn Fn(&Sample) -> f64| {
        let v: Vec<f64> = settled.iter().map(|s| f(s)).collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    let elapsed = started.elapsed().as_secs_f64();
    let total = frames.load(Ordering::Relaxed);
    println!(
        "| streams | seconds | frames | fps | loops (seeks) | RSS after {} s: low–high MiB | growth MiB | GPU memory after {} s: low–high MiB | growth MiB |",
        args.warm_up, args.warm_up
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---|---:|");
    let (rl, rh) = range(&|s| s.rss_mib);
    let (gl, gh) = range(&|s| s.gpu_mib);
    println!(
        "| {} | {:.0} | {} | {:.0} | {} | {:.0}–{:.0} | {:.1} | {:.0}–{:.0} | {:.1} |",
        args.streams,
        elapsed,
        total,
        total as f64 / elapsed,
        loops.load(Ordering::Relaxed),
        rl,
        rh,
        rh - rl,
        gl,
        gh,
        gh - gl
    );
    if let Some(path) = &args.plot {
        let rows: Vec<(f64, f64, f64)> = samples
            .iter()
            .map(|s| (s.seconds / 60.0, s.rss_mib, s.gpu_mib))
            .collect();
        let title = args.title.clone().unwrap_or_else(|| {
            format!(
                "soak: {} streams, {:.0} min, {:.0} fps",
                args.streams,
                elapsed / 60.0,
                total as f64 / elapsed
            )
        });
        plot(path, &title, "minutes", &rows);
    }
    if let Some(f) = failure {
        eprintln!("a stream failed: {f}");
        std::process::exit(1);
    }
}
