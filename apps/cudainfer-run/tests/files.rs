//! File cameras: played at their real frame rate, loop after loop.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A 2 s clip (10 frames at 5 fps) looped: across several loops the
/// results come at 5 a second, not as fast as the model runs. Before the
/// fix a loop's flushing seek left the clock a clip ahead, so every loop
/// after the first ran unpaced.
#[test]
fn a_looped_file_plays_in_real_time() {
    let dir = temp_dir("pacing");
    let clip = small_clip(&dir, 10);
    let json = dir.join("results.jsonl");
    let uri = format!("file://{}", clip.display());
    let (model, json_s) = (model(), json.display().to_string());
    let _service = Service::start(&["--model", &model, "--json", &json_s, &uri], &[]);
    wait_until("the camera publishing", Duration::from_secs(60), || {
        !read_lines(&json).is_empty()
    });
    // Past the first loop, then a window of three more.
    std::thread::sleep(Duration::from_secs(3));
    let (n0, t0) = (read_lines(&json).len(), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let (n1, t1) = (read_lines(&json).len(), Instant::now());
    let rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
    println!(
        "{} frames in {:.1} s: {rate:.2} fps",
        n1 - n0,
        (t1 - t0).as_secs_f64()
    );
    assert!(
        (4.0..=6.0).contains(&rate),
        "a 5 fps file camera delivered {rate:.2} fps"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
