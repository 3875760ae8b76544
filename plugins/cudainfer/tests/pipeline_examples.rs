//! The example scripts of pipelines/, run as a user would, with the plugin
//! this build made.

mod common;

use common::*;

/// The folder of the plugin this test binary was built with
/// (target/<profile>/, beside deps/ where the test runs from).
fn plugin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstcudainfer.so").exists(),
        "no plugin in {}",
        dir.display()
    );
    dir
}

/// RGB frames of `description` (which ends in raw video).
fn rgb_frames(description: &str) -> Vec<Vec<u8>> {
    run(&format!(
        "{description} ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink"
    ))
    .buffers
    .iter()
    .map(|b| b.map_readable().unwrap().to_vec())
    .collect()
}

/// pipelines/annotate.sh cpu on the first 30 frames of dog_1080p.mp4: an
/// MP4 of about 30 H.264 frames at 1920x1080 whose pictures are the clip's with
/// boxes and labels drawn: against the plain decode, the encoder moves
/// most pixels by a few levels at most, the drawing moves a thin share of
/// them (box edges, label backgrounds and letters) by far more.
#[test]
fn annotate_example_writes_an_annotated_mp4() {
    init();
    if gst::ElementFactory::find("x264enc").is_none() {
        eprintln!("skipped: needs x264enc (Debian: gstreamer1.0-plugins-ugly, installed by scripts/setup-deps.sh)");
        return;
    }
    let out = std::env::temp_dir().join(format!("annotate_{}.mp4", std::process::id()));
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/annotate.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .args(["cpu", &media("dog_1080p.mp4"), &model(), &labels()])
        .arg(&out)
        .arg("30")
        .env("GST_PLUGIN_PATH", plugin_dir())
        .status()
        .unwrap();
    assert!(status.success(), "{} failed: {status}", script.display());
    let annotated = rgb_frames(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264",
        out.display()
    ));
    let _ = std::fs::remove_file(&out);
    let plain = rgb_frames(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! identity eos-after=30",
        media("dog_1080p.mp4")
    ));
    // identity eos-after stops the demuxer; the decoder drains the frames
    // it holds, so a few more may follow.
    assert!(
        (30..=34).contains(&annotated.len()),
        "{} frames in the annotated MP4",
        annotated.len()
    );
    assert_eq!(annotated[0].len(), 1920 * 1080 * 3);
    for (i, (a, p)) in annotated.iter().zip(&plain).step_by(10).enumerate() {
        let diffs: Vec<u8> = a
            .chunks_exact(3)
            .zip(p.chunks_exact(3))
            .map(|(x, y)| (0..3).map(|c| x[c].abs_diff(y[c])).max().unwrap())
            .collect();
        let share =
            |min: u8| diffs.iter().filter(|&&d| d > min).count() as f64 / diffs.len() as f64;
        let (small, drawn) = (share(24), share(80));
        println!(
            "frame {}: {:.4} of pixels moved > 24, {:.4} > 80",
            i * 10,
            small,
            drawn
        );
        assert!(drawn > 0.005, "frame {}: nothing drawn ({drawn})", i * 10);
        assert!(
            small < 0.2,
            "frame {}: the picture itself changed ({small})",
            i * 10
        );
    }
}
