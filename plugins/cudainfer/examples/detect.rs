//! Runs detection on a video or image file and prints each frame's
//! detections, read back through the Rust metadata API.
//!
//! ```text
//! cargo run --release --example detect -- VIDEO MODEL [LABELS] [PROVIDERS]
//! ```
//! The plugin is registered from this binary, so nothing needs installing;
//! ONNX Runtime is found through `ORT_DYLIB_PATH` (see the README).

use gst::prelude::*;
use gstcudainfer::FrameDetections;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [video, model, rest @ ..] = args.as_slice() else {
        eprintln!("usage: detect VIDEO MODEL [LABELS] [PROVIDERS]");
        std::process::exit(2);
    };
    let labels = rest
        .first()
        .map(|l| format!("labels=\"{l}\""))
        .unwrap_or_default();
    let providers = rest.get(1).map(String::as_str).unwrap_or("cpu");

    gst::init()?;
    gstcudainfer::plugin_register_static()?;
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{video}\" ! decodebin ! videoconvert ! cudapreprocess \
         ! trtinfer model=\"{model}\" {labels} providers={providers} ! appsink name=sink sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline
        .by_name("sink")
        .and_downcast::<gst_app::AppSink>()
        .expect("appsink");

    let bus = pipeline.bus().expect("pipelines have a bus");
    let first_error = || {
        bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error],
        )
        .and_then(|msg| match msg.view() {
            gst::MessageView::Error(e) => Some(format!(
                "{}: {}",
                e.src().map(|s| s.path_string()).unwrap_or_default(),
                e.error()
            )),
            _ => None,
        })
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        let why = first_error().unwrap_or_else(|| "the pipeline failed to start".into());
        pipeline.set_state(gst::State::Null)?;
        return Err(why.into());
    }
    let mut frame = 0u64;
    while let Ok(sample) = sink.pull_sample() {
        let buffer = sample.buffer().expect("samples carry buffers");
        let found = FrameDetections::from_buffer(buffer).unwrap_or_default();
        let line: Vec<String> = found
            .detections
            .iter()
            .map(|d| {
                format!(
                    "{} {:.2} [{:.0},{:.0} {:.0}x{:.0}]",
                    d.label, d.confidence, d.x, d.y, d.width, d.height
                )
            })
            .collect();
        println!(
            "frame {frame:4} pts {}: {}",
            buffer.pts().map(|t| t.to_string()).unwrap_or_default(),
            line.join(", ")
        );
        frame += 1;
    }
    let result = first_error().map_or(Ok(()), Err);
    pipeline.set_state(gst::State::Null)?;
    eprintln!("{frame} frames");
    result.map_err(Into::into)
}
