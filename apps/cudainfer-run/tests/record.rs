//! `--record DIR`: annotated MP4 segments, each playable, every frame with
//! its boxes drawn, and the segment under way finalised on SIGTERM.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use gst::prelude::*;

/// `dog.jpg` (a dog, a bicycle, a car) as a still clip of `frames` frames,
/// 384x288 at 5 fps, MJPEG in Matroska: objects to draw on every frame, and
/// cheap to decode and encode on a 2-core machine.
fn still_clip(dir: &Path, frames: u32) -> PathBuf {
    let path = dir.join(format!("dog-{frames}.mkv"));
    still_dog_clip(&path, 384, 288, frames);
    path
}

/// One camera of a still clip of `frames` frames, recorded into `rec`:
/// the service started with `--json`, `--record` and `args` before the URI.
struct Recorded {
    dir: PathBuf,
    clip: PathBuf,
    /// The camera's id, which names its segments.
    id: String,
    rec: PathBuf,
    json: PathBuf,
    service: Service,
}

impl Recorded {
    fn start(name: &str, frames: u32, args: &[&str]) -> Recorded {
        let dir = temp_dir(name);
        let clip = still_clip(&dir, frames);
        let rec = dir.join("rec");
        std::fs::create_dir_all(&rec).unwrap();
        let json = dir.join("results.jsonl");
        let (model, json_s, rec_s, uri) = (
            model(),
            json.display().to_string(),
            rec.display().to_string(),
            format!("file://{}", clip.display()),
        );
        let mut all = vec!["--model", &model, "--json", &json_s, "--record", &rec_s];
        all.extend_from_slice(args);
        all.push(&uri);
        let service = Service::start(&all, &[]);
        Recorded {
            dir,
            clip,
            id: ids_for(&[uri.as_str()]).remove(0),
            rec,
            json,
            service,
        }
    }

    fn wait_for_results(&self, n: usize) {
        wait_until(&format!("{n} results"), Duration::from_secs(60), || {
            read_lines(&self.json).len() >= n
        });
    }

    fn published(&self) -> usize {
        read_lines(&self.json).len()
    }

    /// SIGTERM, which must end the service with exit 0.
    fn terminate(&mut self) {
        let status = self.service.terminate(Duration::from_secs(15));
        assert!(
            status.success(),
            "exit {status}:
{}",
            self.service.log_text()
        );
    }

    /// The segments (named in order, see `segments`) and the frames each
    /// one decodes to; a segment that does not play fails the test.
    fn recorded_frames(&self) -> Vec<(PathBuf, usize)> {
        segments(&self.rec, &self.id)
            .into_iter()
            .map(|f| {
                let (_, _, frames) =
                    decode_rgb(&f).unwrap_or_else(|e| panic!("not finalised: {e}"));
                println!("{}: {} frames", f.display(), frames.len());
                (f, frames.len())
            })
            .collect()
    }

    /// One finalised segment of a removed camera: its published frames,
    /// but for the one frame a removal's flush may take after publishing.
    fn assert_removed_camera_recorded(&self) {
        let published = self.published();
        let recorded = self.recorded_frames();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        let frames = recorded[0].1;
        println!("{published} results");
        assert!(
            frames <= published && frames + 1 >= published,
            "{frames} frames recorded, {published} published"
        );
    }

    fn remove(self) {
        drop(self.service);
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

/// Every frame of `path` as packed RGB, (width, height, frames); an error
/// names what failed (an MP4 without its index, a segment that is not
/// finalised, does not play).
fn decode_rgb(path: &Path) -> Result<(u32, u32, Vec<Vec<u8>>), String> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! \
         appsink name=out sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    let mut size = (0, 0);
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(20)) {
        let caps = sample.caps().unwrap().structure(0).unwrap().to_owned();
        size = (
            caps.get::<i32>("width").unwrap() as u32,
            caps.get::<i32>("height").unwrap() as u32,
        );
        let map = sample.buffer().unwrap().map_readable().unwrap();
        // RGB rows of 384 and 320 pixels are 4-byte aligned: no padding.
        frames.push(map.as_slice().to_vec());
    }
    let error = pipeline
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error])
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => format!("{}: {:?}", e.error(), e.debug()),
            _ => unreachable!(),
        });
    pipeline.set_state(gst::State::Null).unwrap();
    match error {
        Some(e) => Err(format!("{}: {e}", path.display())),
        None if frames.is_empty() => Err(format!("{}: no frame", path.display())),
        None => Ok((size.0, size.1, frames)),
    }
}

/// The recorded segments, in order; the names must be `<id>-NNNNN.mp4`.
fn segments(dir: &Path, id: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        assert_eq!(
            f.file_name().unwrap().to_str().unwrap(),
            format!("{id}-{i:05}.mp4"),
            "segment names: {files:?}"
        );
    }
    files
}

/// Mean absolute difference of two RGB frames over the pixels of `rect`
/// (x0, y0, x1, y1), clipped to the frame.
fn mean_diff(a: &[u8], b: &[u8], width: u32, height: u32, rect: (i64, i64, i64, i64)) -> f64 {
    let (x0, y0) = (rect.0.max(0), rect.1.max(0));
    let (x1, y1) = (rect.2.min(width as i64), rect.3.min(height as i64));
    let (mut sum, mut n) = (0u64, 0u64);
    for y in y0..y1 {
        for x in x0..x1 {
            let i = ((y * width as i64 + x) * 3) as usize;
            for c in 0..3 {
                sum += (a[i + c] as i64 - b[i + c] as i64).unsigned_abs();
            }
            n += 3;
        }
    }
    sum as f64 / n.max(1) as f64
}

/// Median absolute difference over the whole frame: what the codec changed.
fn median_diff(a: &[u8], b: &[u8]) -> u8 {
    let mut d: Vec<u8> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).collect();
    let mid = d.len() / 2;
    *d.select_nth_unstable(mid).1
}

/// A 25-frame clip recorded in 2 s segments (`--record-segment 2`): three
/// files named as documented, each a playable MP4 of at most 2 s (10 frames),
/// 25 frames in all; and on every frame the dog's box is drawn (its left edge
/// differs from the source frame by far more than the codec changes).
#[test]
fn recording_in_segments_with_the_overlay() {
    let labels = labels();
    let mut run = Recorded::start(
        "record",
        25,
        &[
            "--labels",
            &labels,
            "--record-segment",
            "2",
            "--once",
            "--no-sync",
        ],
    );
    // --once without --http: the service ends by itself when the file has.
    run.service
        .wait_log("event=service_stopped", Duration::from_secs(60));
    let status = run.service.child.wait().unwrap();
    assert!(
        status.success(),
        "exit {status}:\n{}",
        run.service.log_text()
    );

    let lines = read_lines(&run.json);
    assert_eq!(lines.len(), 25);
    let files = segments(&run.rec, &run.id);
    let (sw, sh, source) = decode_rgb(&run.clip).unwrap();
    let source = &source[0];
    let mut recorded = Vec::new();
    for f in &files {
        let (w, h, frames) = decode_rgb(f).unwrap();
        assert_eq!((w, h), (sw, sh), "{}", f.display());
        println!("{}: {} frames", f.display(), frames.len());
        assert!(
            frames.len() <= 10,
            "{}: {} frames, more than 2 s",
            f.display(),
            frames.len()
        );
        recorded.extend(frames);
    }
    assert!(files.len() >= 3, "2 s segments of a 5 s clip: {files:?}");
    assert_eq!(recorded.len(), 25, "frames over all segments");

    // The still clip's dog, as the service saw it in every frame.
    let dog = lines[0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["label"] == "dog")
        .unwrap_or_else(|| panic!("no dog in {}", lines[0]));
    let b = &dog["box"];
    let (x, y, h) = (
        b["x"].as_f64().unwrap() as i64,
        b["y"].as_f64().unwrap() as i64,
        b["h"].as_f64().unwrap() as i64,
    );
    // The middle half of the box's left edge, clear of the label at the
    // top-left corner: inferoverlay draws it from the even floor of x, 4
    // pixels wide (line-thickness). Beside it, 4 pixels left of the box:
    // nothing drawn, only the codec's changes.
    let x0 = x - x.rem_euclid(2);
    let (top, bottom) = (y + h / 4, y + 3 * h / 4);
    let edge = (x0, top, x0 + 4, bottom);
    let beside = (x0 - 8, top, x0 - 4, bottom);
    let (mut least_edge, mut most_beside, mut most_median) = (f64::MAX, 0f64, 0u8);
    for frame in &recorded {
        least_edge = least_edge.min(mean_diff(frame, source, sw, sh, edge));
        most_beside = most_beside.max(mean_diff(frame, source, sw, sh, beside));
        most_median = most_median.max(median_diff(frame, source));
    }
    println!(
        "mean |recorded - source| on the dog box's left edge at least {least_edge:.1}, \
         beside it at most {most_beside:.1}; whole frame median at most {most_median}"
    );
    assert!(
        least_edge > 30.0 && least_edge > 3.0 * most_beside,
        "the box is not drawn on every frame: edge {least_edge:.1}, beside {most_beside:.1}"
    );
    assert!(most_median < 10, "the frame itself changed ({most_median})");
    run.remove();
}

/// A camera recorded with the default 60 s segments, stopped by SIGTERM a
/// few seconds into its 10 s clip: the segment under way is finalised (an
/// MP4 whose index is written plays; one cut short does not), and it holds
/// one frame per published result.
#[test]
fn sigterm_finalises_the_recording() {
    let mut run = Recorded::start("record-term", 50, &[]);
    run.wait_for_results(15);
    run.terminate();
    let published = run.published();
    let recorded = run.recorded_frames();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    println!("{published} results");
    assert_eq!(recorded[0].1, published);
    run.remove();
}

/// A recorded camera removed through the API a few seconds into its clip:
/// DELETE drops the frames not yet published, and the recording keeps the
/// published ones, finalised (before, the removal's flush emptied the
/// muxer's pending frames and left a 1.7 kB file that does not play). The
/// one frame being pushed when the flush passes may be published and then
/// flushed before it reaches the recording.
#[test]
fn removal_finalises_the_recording() {
    let run = Recorded::start("record-delete", 50, &["--http", "0"]);
    run.wait_for_results(15);
    let (status, reply) =
        run.service
            .request("DELETE", &format!("/cameras/{}", run.id), None, None);
    assert_eq!(status, 204, "{reply}");
    run.assert_removed_camera_recorded();
    run.remove();
}

/// SIGTERM right after a removal, before the removed camera has stopped:
/// the service waits for it too, so its recording is finalised (before,
/// the process ended under it and left segments without their index).
#[test]
fn sigterm_during_a_removal_finalises_the_recording() {
    let mut run = Recorded::start("record-delete-term", 50, &["--http", "0"]);
    run.wait_for_results(15);
    // The DELETE is sent, not waited for.
    let addr = run.service.addr.unwrap();
    let mut delete = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "DELETE /cameras/{} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
        run.id
    );
    delete.write_all(request.as_bytes()).unwrap();
    // SIGTERM as soon as the camera is off the list, while it stops.
    let asked = std::time::Instant::now();
    while run
        .service
        .request("GET", "/cameras", None, None)
        .1
        .contains(&run.id)
    {
        assert!(asked.elapsed() < Duration::from_secs(10), "not removed");
    }
    run.terminate();
    run.assert_removed_camera_recorded();
    drop(delete);
    run.remove();
}

/// A looped file camera records every loop: each loop ends its segment
/// (its EOS finalises it) and the next loop goes on in the next one, none
/// overwritten, the camera never failing. Before, the loop's seek after the
/// recording's EOS failed the camera at every loop ("Internal data stream
/// error") and only the first loop was recorded.
#[test]
fn a_looped_file_records_every_loop() {
    let mut run = Recorded::start("record-loop", 8, &[]);
    // Three loops of 8 frames at 5 fps, and a bit of the fourth.
    run.wait_for_results(26);
    run.terminate();
    let log = run.service.log_text();
    assert!(!log.contains("camera_failed"), "{log}");
    let published = run.published();
    // Named <id>-00000.mp4, -00001… in order (`segments` checks it).
    let recorded = run.recorded_frames();
    let frames: usize = recorded.iter().map(|(_, n)| n).sum();
    println!(
        "{frames} frames recorded in {} segments, {published} results",
        recorded.len()
    );
    assert!(recorded.len() >= 4, "{recorded:?}");
    assert_eq!(frames, published);
    run.remove();
}
