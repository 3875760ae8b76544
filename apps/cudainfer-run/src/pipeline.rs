//! One camera's GstPipeline: source and decoder (`uridecodebin`), then
//! `queue ! cudapreprocess ! trtinfer ! infertrack ! inferpublish…`, an
//! optional recording branch, the snapshot branch (idle until a snapshot is
//! asked for), and the probes that feed its counters.
//!
//! One pipeline per camera isolates failures (a camera's error or teardown
//! touches no other pipeline), while every `trtinfer` of the process with the
//! same model, providers and device shares one session and its batches.

use std::path::PathBuf;
use std::sync::Arc;

use gst::prelude::*;

use crate::config::{Config, Decode};
use crate::snapshot::SnapshotTap;
use crate::stats::CameraStats;
use cudainfer_run::camera_uri::{CameraUri, SourceKind};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("element '{0}' is missing: install the GStreamer plugin that has it")]
    Missing(&'static str),
    #[error("cannot link the camera's pipeline: {0}")]
    Link(String),
}

/// The sink that ends the inference branch; with `sync` it is what paces a
/// file camera to real time.
pub const RESULTS_SINK: &str = "results-sink";

/// What every camera's pipeline is made with, fixed at start.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub model: String,
    pub model_type: String,
    pub labels: Option<String>,
    pub providers: String,
    pub overload: String,
    pub latency_budget: u32,
    /// This camera's GPU (of `gpus`).
    pub device_id: u32,
    /// The service's GPUs.
    pub gpus: Vec<u32>,
    pub json: Option<String>,
    pub mqtt: Option<String>,
    pub record: Option<PathBuf>,
    /// Length of a recorded segment.
    pub record_segment: gst::ClockTime,
    pub gpu: bool,
    pub sync: bool,
}

impl PipelineSettings {
    pub fn new(config: &Config, gpu: bool) -> PipelineSettings {
        let default_json = config.json.is_none() && config.mqtt.is_none();
        PipelineSettings {
            model: config.model.display().to_string(),
            model_type: config.model_type.clone(),
            labels: config.labels.as_ref().map(|l| l.display().to_string()),
            providers: config
                .providers
                .clone()
                .unwrap_or_else(|| if gpu { "cuda,cpu" } else { "cpu" }.to_string()),
            overload: config.overload.clone(),
            latency_budget: config.latency_budget,
            device_id: config.device_id,
            gpus: config.gpus.clone(),
            // Without any output the results go to stdout: a detector whose
            // results go nowhere is a mistake.
            json: if default_json {
                Some("-".into())
            } else {
                config.json.clone()
            },
            mqtt: config.mqtt.clone(),
            record: config.record.clone(),
            record_segment: gst::ClockTime::from_seconds(config.record_segment),
            gpu,
            sync: config.sync,
        }
    }
}

/// `trtinfer` with the service's inference settings.
fn make_infer(settings: &PipelineSettings) -> Result<gst::Element, BuildError> {
    let infer = make("trtinfer")?;
    infer.set_property("model", &settings.model);
    infer.set_property_from_str("model-type", &settings.model_type);
    if let Some(labels) = &settings.labels {
        infer.set_property("labels", labels);
    }
    infer.set_property("providers", &settings.providers);
    infer.set_property("device-id", settings.device_id as i32);
    infer.set_property_from_str("overload", &settings.overload);
    infer.set_property("latency-budget", settings.latency_budget);
    Ok(infer)
}

/// Loads the model once with the service's settings before any camera
/// starts, so that a model-type, model, labels file or provider list that
/// cannot work stops the service at once with `trtinfer`'s own message,
/// instead of every camera retrying forever. The session is let go again:
/// a member of a batch group that sends no frames would hold the others'
/// batches back.
pub fn check_inference(settings: &PipelineSettings) -> Result<(), String> {
    let probe = make("trtinfer").map_err(|e| e.to_string())?;
    let model_type = probe
        .find_property("model-type")
        .ok_or("trtinfer has no model-type property")?;
    let known = glib::EnumClass::with_type(model_type.value_type())
        .ok_or("trtinfer's model-type is not an enum")?;
    if known.value_by_nick(&settings.model_type).is_none() {
        let nicks: Vec<&str> = known.values().iter().map(|v| v.nick()).collect();
        return Err(format!(
            "--model-type '{}' is not a model type: use one of {}",
            settings.model_type,
            nicks.join(", ")
        ));
    }
    let infer = make_infer(settings).map_err(|e| e.to_string())?;
    let pipeline = gst::Pipeline::with_name("model-check");
    pipeline.add(&infer).map_err(|e| e.to_string())?;
    let started = pipeline.set_state(gst::State::Paused);
    let error = pipeline
        .bus()
        .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
        .and_then(|m| match m.view() {
            gst::MessageView::Error(e) => Some(match e.debug() {
                Some(d) => format!("{} ({d})", e.error()),
                None => e.error().to_string(),
            }),
            _ => None,
        });
    let _ = pipeline.set_state(gst::State::Null);
    match (started, error) {
        (_, Some(message)) => Err(message),
        (Err(_), None) => Err("trtinfer did not start".into()),
        (Ok(_), None) => Ok(()),
    }
}

/// The GPU an NVIDIA decoder factory decodes on (`nvh264dec` device 0,
/// `nvh264device1dec` device 1, `nvh265device2dec` device 2, …); `None`
/// for any other factory.
pub fn decoder_device(factory: &str) -> Option<u32> {
    let inner = factory.strip_prefix("nv")?.strip_suffix("dec")?;
    match inner.split_once("device") {
        Some((codec, n)) if !codec.is_empty() => n.parse().ok(),
        Some(_) => None,
        None if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric()) => Some(0),
        None => None,
    }
}

/// Ranks the decoders for the whole process: with a GPU, NVIDIA's H.264 and
/// H.265 decoders of `devices` first and the other GPUs' not at all
/// (each camera then keeps to its own GPU's, see [`build`]); without, no
/// NVIDIA decoder, so the CPU's (`avdec_h264`) decodes. Returns whether the
/// GPU path is on: every device listed has its decoders.
pub fn rank_decoders(decode: Decode, devices: &[u32]) -> bool {
    let registry = gst::Registry::get();
    let nv_decoders: Vec<gst::ElementFactory> = registry
        .features(gst::ElementFactory::static_type())
        .into_iter()
        .filter_map(|f| f.downcast::<gst::ElementFactory>().ok())
        .filter(|f| {
            decoder_device(&f.name()).is_some() && f.has_type(gst::ElementFactoryType::DECODER)
        })
        .collect();
    let ours = |device: u32, codec: &str| {
        if device == 0 {
            format!("nv{codec}dec")
        } else {
            format!("nv{codec}device{device}dec")
        }
    };
    let wanted: Vec<[String; 2]> = devices
        .iter()
        .map(|&d| [ours(d, "h264"), ours(d, "h265")])
        .collect();
    let have_gpu = wanted.iter().all(|names| {
        nv_decoders
            .iter()
            .any(|f| names.contains(&f.name().to_string()))
    });
    let gpu = match decode {
        Decode::Cpu => false,
        Decode::Gpu | Decode::Auto => have_gpu,
    };
    for f in &nv_decoders {
        let rank = if gpu && wanted.iter().flatten().any(|n| *n == f.name()) {
            gst::Rank::PRIMARY + 10
        } else {
            gst::Rank::NONE
        };
        f.set_rank(rank);
    }
    gpu
}

/// Keeps `uridecodebin` from plugging another GPU's NVIDIA decoder than
/// `device`'s: with several GPUs every one's decoders rank alike.
fn keep_to_device(src: &gst::Element, device: u32) {
    // The signal's result type exists once uridecodebin's class does.
    let Some(results) = glib::Type::from_name("GstAutoplugSelectResult") else {
        return;
    };
    let answer = move |nick: &str| {
        let class = glib::EnumClass::with_type(results)?;
        Some(class.value_by_nick(nick)?.to_value(&class))
    };
    src.connect("autoplug-select", false, move |args| {
        let factory = args.get(3)?.get::<gst::ElementFactory>().ok()?;
        match decoder_device(&factory.name()) {
            Some(d) if d != device => answer("skip"),
            _ => answer("try"),
        }
    });
}

fn make(factory: &'static str) -> Result<gst::Element, BuildError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| BuildError::Missing(factory))
}

/// The recording branch's encoder for this memory: the GPU's on CUDA frames.
fn encoder_description(gpu: bool) -> Result<String, BuildError> {
    let have = |f: &str| gst::ElementFactory::find(f).is_some();
    if gpu && have("nvh264enc") {
        return Ok("nvh264enc ! h264parse".into());
    }
    let download = if gpu { "cudadownload ! " } else { "" };
    let options = [
        (
            "x264enc",
            "videoconvert ! x264enc tune=zerolatency speed-preset=veryfast ! h264parse",
        ),
        ("openh264enc", "videoconvert ! openh264enc ! h264parse"),
        (
            "avenc_mpeg4",
            "videoconvert ! avenc_mpeg4 ! mpeg4videoparse",
        ),
    ];
    options
        .iter()
        .find(|(f, _)| have(f))
        .map(|(_, d)| format!("{download}{d}"))
        .ok_or(BuildError::Missing("x264enc"))
}

/// Builds camera `id`'s pipeline (in NULL), reading `source` (the URI's
/// credential-free form, a file's resolved path) with `uri`'s credentials.
pub fn build(
    id: &str,
    source: &str,
    uri: &CameraUri,
    settings: &PipelineSettings,
    stats: &Arc<CameraStats>,
    snapshots: &Arc<SnapshotTap>,
) -> Result<gst::Pipeline, BuildError> {
    let pipeline = gst::Pipeline::with_name(id);
    let src = make("uridecodebin")?;
    src.set_property("uri", source);
    if settings.gpu {
        keep_to_device(&src, settings.device_id);
    }
    connect_source_setup(&src, uri);
    refuse_streams(&src);

    let queue = make("queue")?;
    queue.set_property("name", "infer-queue");
    // A few frames only: trtinfer keeps its own frames in flight, and a long
    // queue would hold minutes of a file ahead of real time and of an EOS.
    queue.set_property("max-size-buffers", 4u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    let pre = make("cudapreprocess")?;
    pre.set_property("device-id", settings.device_id);
    let infer = make_infer(settings)?;
    let track = make("infertrack")?;
    let mut chain = vec![queue.clone(), pre.clone(), infer, track];
    for location in [&settings.json, &settings.mqtt].into_iter().flatten() {
        let publish = make("inferpublish")?;
        publish.set_property("location", location);
        publish.set_property("source", id);
        if location.contains("://") {
            // One MQTT client per camera, named for the host and camera: the
            // same in every run (a restarted instance takes its session
            // over), and different in every pod (pods' processes all have
            // pid 1, which the element's default would use).
            publish.set_property("client-id", format!("cudainfer-{}-{id}", glib::host_name()));
        }
        if !location.contains("://") && location != "-" && location != "stdout" {
            // Every camera writes to the one file, line by line.
            publish.set_property("append", true);
        }
        chain.push(publish);
    }
    let tee = make("tee")?;
    let sink = make("fakesink")?;
    sink.set_property("name", RESULTS_SINK);
    sink.set_property("sync", settings.sync);
    sink.set_property("async", false);
    let last = chain.last().expect("not empty").clone();
    pipeline
        .add_many(chain.iter().chain([&src, &tee, &sink]))
        .map_err(|e| BuildError::Link(e.to_string()))?;
    gst::Element::link_many(chain.iter().chain([&tee, &sink]))
        .map_err(|e| BuildError::Link(e.to_string()))?;
    if let Some(dir) = &settings.record {
        add_recording(&pipeline, &tee, id, dir, settings)?;
    }
    add_snapshot_branch(&pipeline, &tee, settings, snapshots)?;

    // Decoded video goes to the inference branch; anything else (audio) to a
    // fakesink of its own, since an unlinked pad would fail the stream.
    let pipeline_weak = pipeline.downgrade();
    let queue_sink = queue.static_pad("sink").expect("queue has a sink");
    src.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/"));
        if is_video && !queue_sink.is_linked() {
            let _ = pad.link(&queue_sink);
        } else if let Some(pipeline) = pipeline_weak.upgrade() {
            if let Ok(sink) = gst::ElementFactory::make("fakesink")
                .name(format!("other-stream-{}", pad.name()))
                .property("sync", false)
                .property("async", false)
                .build()
            {
                let _ = pipeline.add(&sink);
                let _ = sink.sync_state_with_parent();
                let _ = pad.link(&sink.static_pad("sink").expect("fakesink has a sink"));
            }
        }
    });

    add_probes(&pre, &last, &queue, stats);
    Ok(pipeline)
}

/// Caps of playlists, which adaptive demuxers (hlsdemux, dashdemux, …)
/// follow by fetching the URIs they list themselves, `file://` ones too:
/// a playlist would read files past every check the service makes.
const PLAYLIST_CAPS: &[&str] = &[
    "application/x-hls",
    "application/dash+xml",
    "application/vnd.ms-sstr+xml",
];

/// The largest frame a camera may have, 8192 × 4320 (DCI 8K), as its
/// pixels and its longest side (either way round). A larger frame costs the
/// decoder hundreds of megabytes per buffer, so a small file or stream that
/// declares one could take the memory of every camera.
pub const MAX_FRAME: (u64, u64) = (8192, 4320);

/// Why a stream of these caps is no camera's, if it is not: a playlist, or
/// frames over [`MAX_FRAME`].
pub fn refusal(caps: &gst::CapsRef) -> Option<String> {
    let s = caps.structure(0)?;
    if PLAYLIST_CAPS.contains(&s.name().as_str()) {
        return Some(format!(
            "the camera's stream is a playlist ({}): playlists (HLS, DASH) are not camera \
             sources, since their demuxers fetch the addresses they list, local files included; \
             give the camera's video stream itself",
            s.name()
        ));
    }
    let side = |f: &str| s.get::<i32>(f).ok().map(|v| u64::from(v.unsigned_abs()));
    let (w, h) = (side("width")?, side("height")?);
    let (most_w, most_h) = MAX_FRAME;
    (w * h > most_w * most_h || w.max(h) > most_w).then(|| {
        format!(
            "the camera's frames are {w}x{h}, over the {most_w}x{most_h} (8K) a camera may \
             have: give a smaller stream (most cameras offer a sub-stream)"
        )
    })
}

/// Fails the camera when its stream turns out to be a playlist or its
/// frames too large, before a demuxer or decoder for it is made.
fn refuse_streams(src: &gst::Element) {
    src.connect("autoplug-continue", false, |args| {
        let caps = args[2].get::<gst::Caps>().ok()?;
        if let (Some(why), Ok(bin)) = (refusal(&caps), args[0].get::<gst::Element>()) {
            gst::element_error!(bin, gst::StreamError::WrongType, ("{why}"));
            return Some(false.to_value());
        }
        Some(true.to_value())
    });
}

/// Credentials go to the source element's own properties, never in its URI:
/// element errors and debug logs quote URIs.
fn connect_source_setup(src: &gst::Element, uri: &CameraUri) {
    let user = uri.user().map(str::to_owned);
    let password = uri.password().map(str::to_owned);
    let kind = uri.kind();
    src.connect("source-setup", false, move |args| {
        let source = args[1]
            .get::<gst::Element>()
            .expect("source-setup gives the source");
        let set = |name: &str, value: &dyn ToValue| {
            if source.find_property(name).is_some() {
                source.set_property(name, value.to_value());
            }
        };
        if let Some(u) = &user {
            set("user-id", u);
        }
        if kind == SourceKind::Http && (user.is_some() || password.is_some()) {
            // souphttpsrc would answer a redirect's challenge with the same
            // credentials, whatever host it leads to.
            set("automatic-redirect", &false);
        }
        if let Some(p) = &password {
            set("user-pw", p);
        }
        if kind == SourceKind::Rtsp {
            // TCP: no loss on a busy host, and a closed connection is an
            // immediate error instead of a silent stall.
            source.set_property_from_str("protocols", "tcp");
            set("latency", &200u32);
            set("tcp-timeout", &5_000_000u64);
        }
        None
    });
}

/// One past the highest `{id}-NNNNN.mp4` in `dir` (0 when there is none).
fn next_segment_index(dir: &std::path::Path, id: &str) -> i32 {
    let prefix = format!("{id}-");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let digits = name.strip_prefix(&prefix)?.strip_suffix(".mp4")?;
            (digits.len() == 5).then(|| digits.parse::<i32>().ok())?
        })
        .max()
        .map_or(0, |i| i + 1)
}

fn add_recording(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    id: &str,
    dir: &std::path::Path,
    settings: &PipelineSettings,
) -> Result<(), BuildError> {
    // A leaky queue: a slow encoder loses recorded frames, never inference.
    let description = format!(
        "queue leaky=downstream max-size-buffers=30 max-size-bytes=0 max-size-time=0 ! \
         inferoverlay ! {}",
        encoder_description(settings.gpu)?
    );
    let encode = gst::parse::bin_from_description(&description, true)
        .map_err(|e| BuildError::Link(e.to_string()))?;
    // splitmuxsink is made here, not in the description: its muxer exists
    // from its first request pad on, and a parsed bin ghosting unlinked
    // pads took the muxer's source too ("Failed to link muxer and sink").
    let mux = make("splitmuxsink")?;
    mux.set_property("max-size-time", settings.record_segment.nseconds());
    // It can only split at a keyframe: ask the encoder for one at the end.
    mux.set_property("send-keyframe-requests", true);
    mux.set_property(
        "location",
        dir.join(format!("{id}-%05d.mp4")).display().to_string(),
    );
    // After the segments already there: a camera's next run (a loop of a
    // file, a reconnect, the service started again) must not overwrite them.
    mux.set_property("start-index", next_segment_index(dir, id));
    // splitmuxsink prerolls only once its first GOP is whole (at the second
    // keyframe, seconds away): a bin that keeps that to itself lets the
    // pipeline reach PLAYING at once. Before, it stayed in PAUSED, where the
    // results sink blocks inference, and the camera stalled.
    let recording = gst::Bin::builder()
        .name("recording")
        .async_handling(true)
        .build();
    recording
        .add_many([encode.upcast_ref(), &mux])
        .map_err(|e| BuildError::Link(e.to_string()))?;
    encode
        .link(&mux)
        .map_err(|e| BuildError::Link(e.to_string()))?;
    let encode_sink = encode.static_pad("sink").expect("ghosted by the parser");
    let ghost =
        gst::GhostPad::with_target(&encode_sink).map_err(|e| BuildError::Link(e.to_string()))?;
    // A removal flushes the inference branch to drop the frames it has not
    // published; the recording keeps what it got, for the EOS that follows
    // to finalise. A flush emptied splitmuxsink's pending GOP and left an
    // unplayable file.
    ghost.add_probe(gst::PadProbeType::EVENT_FLUSH, |_, _| {
        gst::PadProbeReturn::Drop
    });
    recording
        .add_pad(&ghost)
        .map_err(|e| BuildError::Link(e.to_string()))?;
    pipeline
        .add(&recording)
        .map_err(|e| BuildError::Link(e.to_string()))?;
    tee.link(&recording)
        .map_err(|e| BuildError::Link(e.to_string()))
}

/// `tee ! queue ! inferoverlay ! [cudadownload !] videoscale ! videoconvert
/// ! capsfilter ! jpegenc ! fakesink`, behind a gate on the queue's sink that
/// drops every frame but one asked for (see `snapshot`): while nobody asks,
/// the branch does nothing, and on CUDA frames nothing is downloaded. The
/// queue is leaky and one frame long, so drawing and encoding never hold
/// back inference.
fn add_snapshot_branch(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    settings: &PipelineSettings,
    snapshots: &Arc<SnapshotTap>,
) -> Result<(), BuildError> {
    let link = |e: glib::BoolError| BuildError::Link(e.to_string());
    let queue = make("queue")?;
    queue.set_property("name", "snapshot-queue");
    queue.set_property_from_str("leaky", "downstream");
    queue.set_property("max-size-buffers", 1u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    let overlay = make("inferoverlay")?;
    let mut chain = vec![queue.clone(), overlay];
    if settings.gpu {
        chain.push(make("cudadownload")?);
    }
    let size = make("capsfilter")?;
    snapshots.attach(&size);
    let encoder = make("jpegenc")?;
    encoder.set_property("quality", crate::snapshot::QUALITY);
    let sink = make("fakesink")?;
    sink.set_property("name", "snapshot-sink");
    sink.set_property("sync", false);
    sink.set_property("async", false);
    sink.set_property("enable-last-sample", false);
    sink.set_property("signal-handoffs", true);
    chain.extend([make("videoscale")?, make("videoconvert")?, size, encoder]);
    chain.push(sink.clone());
    pipeline.add_many(&chain).map_err(link)?;
    gst::Element::link_many(&chain).map_err(link)?;
    tee.link(&queue).map_err(link)?;
    let tap = snapshots.clone();
    sink.connect("handoff", false, move |args| {
        let buffer = args[1].get::<gst::Buffer>().ok()?;
        let caps = args[2]
            .get::<gst::Pad>()
            .ok()
            .and_then(|p| p.current_caps());
        tap.store(&buffer, caps.as_deref());
        None
    });
    let tap = snapshots.clone();
    queue
        .static_pad("sink")
        .expect("queue has a sink")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if tap.pass() {
                gst::PadProbeReturn::Ok
            } else {
                // Taken and dropped here, so that GStreamer has nothing
                // left to unref.
                drop(info.take_buffer());
                gst::PadProbeReturn::Handled
            }
        });
    Ok(())
}

fn add_probes(
    pre: &gst::Element,
    last: &gst::Element,
    queue: &gst::Element,
    stats: &Arc<CameraStats>,
) {
    // Each frame's PTS as it passes `pad`.
    let on_frame = |pad: gst::Pad, count: fn(&CameraStats, Option<gst::ClockTime>)| {
        let s = stats.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer() {
                count(&s, b.pts());
            }
            gst::PadProbeReturn::Ok
        });
    };
    on_frame(
        pre.static_pad("sink").expect("sink pad"),
        CameraStats::frame_in,
    );
    on_frame(
        last.static_pad("src").expect("src pad"),
        CameraStats::frame_out,
    );
    // The objects of the latest published frame, by label, for the API.
    let s = stats.clone();
    last.static_pad("src").expect("src pad").add_probe(
        gst::PadProbeType::BUFFER,
        move |_, info| {
            if let Some(results) = info
                .buffer()
                .and_then(|b| gstcudainfer::FrameDetections::from_buffer(b))
            {
                s.set_objects(results.detections.iter().map(|d| d.label.as_str()));
            }
            gst::PadProbeReturn::Ok
        },
    );
    let s = stats.clone();
    queue.static_pad("src").expect("src pad").add_probe(
        gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data {
                if e.type_() == gst::EventType::FlushStop {
                    s.forget_in_flight();
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
}

#[cfg(test)]
mod tests {
    use super::{decoder_device, keep_to_device, refusal};
    use gst::prelude::*;

    #[test]
    fn playlists_and_frames_over_8k_are_refused() {
        gst::init().unwrap();
        let video = |w: i32, h: i32| {
            gst::Caps::builder("video/x-h264")
                .field("width", w)
                .field("height", h)
                .build()
        };
        for (w, h) in [
            (1920, 1080),
            (7680, 4320),
            (8192, 4320),
            (4320, 8192),
            (32, 2048),
        ] {
            assert_eq!(refusal(&video(w, h)), None, "{w}x{h}");
        }
        for (w, h) in [(8193, 16), (16, 8193), (8000, 4500), (16000, 16000)] {
            let why = refusal(&video(w, h)).unwrap_or_default();
            assert!(
                why.contains(&format!("frames are {w}x{h}, over the 8192x4320")),
                "{why}"
            );
        }
        // No size yet (a demuxer's pad before its parser): decided later.
        assert_eq!(refusal(&gst::Caps::builder("video/x-h264").build()), None);
        let hls = gst::Caps::builder("application/x-hls").build();
        assert!(refusal(&hls).unwrap_or_default().contains("is a playlist"));
    }

    /// The camera's decoder choice answers uridecodebin with the signal's
    /// own result type: a CPU decoder (of no GPU) is tried, and the clip
    /// decodes as without the handler.
    #[test]
    fn keeping_to_a_gpu_lets_a_cpu_decoder_decode() {
        gst::init().unwrap();
        // Where the integration tests find the shared data.
        let clip = [
            std::env::var_os("CUDAINFER_SHARED_DIR").map(std::path::PathBuf::from),
            Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")),
            Some("/work/shared".into()),
        ]
        .into_iter()
        .flatten()
        .map(|d| d.join("media/dog_1080p.mp4"))
        .find(|c| c.exists())
        .expect("test data not found: set CUDAINFER_SHARED_DIR to the folder holding media/");
        let clip =
            std::fs::canonicalize(&clip).unwrap_or_else(|e| panic!("{}: {e}", clip.display()));
        let pipeline = gst::parse::launch(&format!(
            "uridecodebin name=src uri=file://{} caps=video/x-raw ! identity eos-after=5 ! fakesink name=sink",
            clip.display()
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let src = pipeline.by_name("src").unwrap();
        keep_to_device(&src, 1);
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let f = frames.clone();
        pipeline
            .by_name("sink")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                f.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS or an error within a minute");
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        assert!(frames.load(std::sync::atomic::Ordering::Relaxed) >= 4);
    }

    #[test]
    fn an_nvidia_decoder_names_its_gpu() {
        for (name, device) in [
            ("nvh264dec", Some(0)),
            ("nvh265dec", Some(0)),
            ("nvav1dec", Some(0)),
            ("nvh264device1dec", Some(1)),
            ("nvh265device12dec", Some(12)),
            ("nvjpegdevice3dec", Some(3)),
            ("avdec_h264", None),
            ("nvdec", None),
            ("nvdevice1dec", None),
            ("nvh264devicexdec", None),
            ("nvh264enc", None),
            ("nv_h264dec", None),
        ] {
            assert_eq!(decoder_device(name), device, "{name}");
        }
    }
}
