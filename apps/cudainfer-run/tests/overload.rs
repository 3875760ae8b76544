//! More cameras than inference can serve: with `--overload skip` the
//! cameras skip frames (counted in /metrics, marked in the JSON lines) and
//! the API refuses another camera with 503 and the reason, instead of
//! letting every camera degrade further.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A 30 fps clip: `frames` frames of 320x240, MJPEG in Matroska.
fn clip_30fps(dir: &Path, frames: u32) -> std::path::PathBuf {
    let path = dir.join(format!("ball-30fps-{frames}.mkv"));
    let frames = format!("num-buffers={frames}");
    mjpeg_clip(
        &path,
        &[
            "videotestsrc",
            "pattern=ball",
            &frames,
            "!",
            "video/x-raw,width=320,height=240,framerate=30/1",
        ],
    );
    path
}

#[test]
fn no_headroom_refuses_cameras_with_503() {
    const CAMERAS: usize = 6;
    let dir = temp_dir("overload");
    let clip = clip_30fps(&dir, 150);
    let json = dir.join("results.jsonl");
    let (model, json_s, dir_s) = (
        model(),
        json.display().to_string(),
        dir.display().to_string(),
    );
    let uri = format!("file://{}", clip.display());
    let mut args = vec![
        "--model",
        &model,
        "--json",
        &json_s,
        "--http",
        "0",
        "--allow-dir",
        &dir_s,
        "--overload",
        "skip",
        "--latency-budget",
        "200",
    ];
    for _ in 0..CAMERAS {
        args.push(&uri);
    }
    let service = Service::start(&args, &[]);
    // Six cameras at 30 fps are several times what YOLOX-nano infers on
    // two CPU cores: the cameras skip, and the service says so.
    wait_until("skipping reported", Duration::from_secs(90), || {
        service.metrics().0.get("cudainfer_overloaded") == Some(&1.0)
            && read_lines(&json)
                .iter()
                .filter(|l| l["skipped"] == "overload")
                .count()
                > 30
    });
    // Past the start (frames decoded while the model first ran are late
    // too), the cameras go on skipping: the overload is the steady state.
    let ids = ids_for(&[uri.as_str(); CAMERAS]);
    let skipped = || {
        let metrics = service.metrics();
        ids.iter()
            .map(|id| metrics.camera("cudainfer_camera_skipped_total", id))
            .sum::<f64>()
    };
    std::thread::sleep(Duration::from_secs(4));
    let before = skipped();
    std::thread::sleep(Duration::from_secs(3));
    let after = skipped();
    assert!(
        after > before,
        "no frames skipped in the steady state ({before} then {after})"
    );
    assert_eq!(service.metrics().0["cudainfer_headroom_ratio"], 0.0);
    let body = format!("{{\"uri\": \"{uri}\"}}");
    let (status, reply) = service.request("POST", "/cameras", Some(body.as_bytes()), None);
    assert_eq!(status, 503, "{reply}");
    assert!(reply.contains("no headroom for another camera"), "{reply}");
    assert!(reply.contains("skipping frames"), "{reply}");
    assert_eq!(service.cameras().len(), CAMERAS);
    // The JSON lines mark the frames passed on and their tracker boxes.
    let lines = read_lines(&json);
    let skipped_lines = lines.iter().filter(|l| l["skipped"] == "overload").count();
    assert!(skipped_lines > 0, "no line marked skipped");
    for line in lines.iter().filter(|l| l["skipped"] == "overload") {
        let objects = line["objects"].as_array().unwrap();
        assert!(objects.iter().all(|o| o["predicted"] == true), "{line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
