//! `GET /cameras/{id}/snapshot.jpg`: the JPEG decodes at the size asked,
//! its boxes lie where the JSON lines put the objects (the overlay's class
//! colour on the box edges, the picture unchanged away from them), the
//! token, unknown and failed cameras, the rate bound, and no snapshot work
//! while nobody polls (the branch encodes nothing; CPU time printed).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "snapshot-test-token-0123456789";

/// One GET over a new connection: (status, head, body bytes).
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, reply[split + 4..].to_vec())
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (status, _, body) = get(addr, "/metrics", Some(TOKEN));
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    *Metrics::parse(&text)
        .0
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// (width, height, RGB bytes).
fn decode(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    let pixels = decoder.decode().expect("the snapshot is a JPEG");
    let info = decoder.info().unwrap();
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    (info.width as usize, info.height as usize, pixels)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime, stime are 14, 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// inferoverlay's colour of a class (overlay/layout.rs) for the classes the
/// dog picture shows surely.
fn class_colour(class_id: u64) -> Option<[u8; 3]> {
    match class_id {
        1 => Some([60, 180, 75]),
        2 => Some([255, 225, 25]),
        _ => None,
    }
}

fn clip_of_dog(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    still_dog_clip(&path, 640, 480, 25);
    path
}

/// The clip's first frame as RGB, without any drawing, decoded as the
/// service decodes it.
fn reference_frame(dir: &Path, clip: &Path) -> (usize, usize, Vec<u8>) {
    let out = dir.join("reference.rgb");
    let status = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "filesrc",
            &format!("location={}", clip.display()),
            "!",
            "matroskademux",
            "!",
            "jpegdec",
            "!",
            "videoconvert",
            "!",
            "video/x-raw,format=RGB,width=640,height=480",
            "!",
            "identity",
            // identity ends the stream at the N-th buffer, passing N - 1.
            "eos-after=2",
            "!",
            "filesink",
            &format!("location={}", out.display()),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let rgb = std::fs::read(out).unwrap();
    assert_eq!(rgb.len(), 640 * 480 * 3);
    (640, 480, rgb)
}

#[test]
fn snapshots_show_the_boxes_on_demand_only() {
    let dir = temp_dir("snapshot");
    let clip = clip_of_dog(&dir, "dog.mkv");
    let broken = dir.join("broken.mp4");
    std::fs::write(&broken, b"\0\0\0\x18ftypisom not a video at all").unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let json = dir.join("results.jsonl");
    let (model, labels) = (model(), labels());
    let mut service = Service::start(
        &[
            "--model",
            &model,
            "--labels",
            &labels,
            "--json",
            json.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--token-file",
            token_file.to_str().unwrap(),
            &format!("file://{}", clip.display()),
            &format!("file://{}", broken.display()),
        ],
        &[],
    );
    let addr = service.addr.unwrap();
    let (_, _, list) = get(addr, "/cameras", Some(TOKEN));
    let cameras: Vec<serde_json::Value> = serde_json::from_slice(&list).unwrap();
    let id = cameras[0]["id"].as_str().unwrap().to_string();
    let broken_id = cameras[1]["id"].as_str().unwrap().to_string();
    service.wait_log(
        &format!("event=camera_running camera={id}"),
        Duration::from_secs(90),
    );

    // No client polls: the branch encodes nothing, whatever the window.
    let pid = service.child.id();
    let window = Duration::from_secs(6);
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let idle_ticks = cpu_ticks(pid) - before;
    assert_eq!(metric(addr, "cudainfer_snapshots_encoded_total"), 0.0);

    // The token, unknown cameras, failed ones.
    let path = format!("/cameras/{id}/snapshot.jpg?width=320");
    let (status, head, _) = get(addr, &path, None);
    assert_eq!(status, 401, "{head}");
    let (status, _, body) = get(addr, "/cameras/nope/snapshot.jpg", Some(TOKEN));
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("error"));
    let (status, _, body) = get(
        addr,
        &format!("/cameras/{broken_id}/snapshot.jpg"),
        Some(TOKEN),
    );
    let reason: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 503, "{reason}");
    assert!(
        reason["error"]
            .as_str()
            .unwrap()
            .starts_with("no frame yet"),
        "{reason}"
    );
    assert_eq!(metric(addr, "cudainfer_snapshots_encoded_total"), 0.0);

    // Sizes: as asked, clamped, aspect kept.
    for (asked, expected) in [(320, (320, 240)), (100, (160, 120)), (5000, (1920, 1440))] {
        let (status, head, jpeg) = get(
            addr,
            &format!("/cameras/{id}/snapshot.jpg?width={asked}"),
            Some(TOKEN),
        );
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("content-type: image/jpeg"), "{head}");
        assert!(head.contains("content-security-policy: default-src 'none'"));
        let (w, h, _) = decode(&jpeg);
        assert_eq!((w, h), expected, "width={asked}");
    }

    // The boxes: at full size, each sure object's left and right edges are
    // in its class colour where the undrawn picture is not, and the picture
    // away from every box and label is the clip's.
    let (_, _, jpeg) = get(
        addr,
        &format!("/cameras/{id}/snapshot.jpg?width=640"),
        Some(TOKEN),
    );
    let (w, h, shot) = decode(&jpeg);
    assert_eq!((w, h), (640, 480));
    let (rw, rh, reference) = reference_frame(&dir, &clip);
    assert_eq!((rw, rh), (640, 480));
    let lines = read_lines(&json);
    let last = lines_of(&lines, &id).last().copied().unwrap().clone();
    let pixel = |img: &[u8], x: usize, y: usize| -> [u8; 3] {
        let i = (y * w + x) * 3;
        [img[i], img[i + 1], img[i + 2]]
    };
    let near = |a: [u8; 3], b: [u8; 3], d: i32| {
        a.iter()
            .zip(b)
            .map(|(&p, q)| (p as i32 - q as i32).pow(2))
            .sum::<i32>()
            < d * d
    };
    let mut checked = 0;
    let mut drawn = vec![false; w * h];
    for obj in last["objects"].as_array().unwrap() {
        let b = &obj["box"];
        let (x, y, bw, bh) = (
            b["x"].as_f64().unwrap(),
            b["y"].as_f64().unwrap(),
            b["w"].as_f64().unwrap(),
            b["h"].as_f64().unwrap(),
        );
        // Box, its lines and its label (above the box) kept out of the
        // comparison of the undrawn parts.
        let (x0, y0) = ((x - 8.0).max(0.0) as usize, (y - 40.0).max(0.0) as usize);
        let (x1, y1) = (
            ((x + bw + 8.0) as usize).min(w),
            ((y + bh + 8.0) as usize).min(h),
        );
        for yy in y0..y1 {
            for xx in x0..x1 {
                drawn[yy * w + xx] = true;
            }
        }
        let Some(colour) = class_colour(obj["class_id"].as_u64().unwrap()) else {
            continue;
        };
        if obj["confidence"].as_f64().unwrap() < 0.75 {
            continue;
        }
        let (mut hits, mut total) = (0, 0);
        for edge in [x, x + bw] {
            for k in 2..9 {
                let yy = (y + bh * k as f64 / 10.0) as usize;
                let xs = (edge as i64 - 4).max(0) as usize..((edge as usize) + 5).min(w);
                total += 1;
                let coloured = xs.clone().any(|xx| near(pixel(&shot, xx, yy), colour, 60));
                let was_not = xs
                    .clone()
                    .all(|xx| !near(pixel(&reference, xx, yy), colour, 60));
                hits += usize::from(coloured && was_not);
            }
        }
        println!(
            "{} ({:.2}): {hits}/{total} edge points in its colour, not so in the undrawn frame",
            obj["label"], obj["confidence"]
        );
        assert!(hits * 10 >= total * 8, "{obj}");
        checked += 1;
    }
    assert!(checked >= 1, "no sure object in {last}");
    let (mut diff, mut n) = (0u64, 0u64);
    for (i, _) in drawn.iter().enumerate().filter(|(_, d)| !**d) {
        for c in 0..3 {
            diff += (shot[i * 3 + c] as i64 - reference[i * 3 + c] as i64).unsigned_abs();
        }
        n += 3;
    }
    let mean = diff as f64 / n as f64;
    println!("mean difference away from the boxes: {mean:.2} of 255");
    assert!(mean < 8.0, "{mean}");

    // The rate bound: a client asking as fast as it can gets at most one
    // new frame per 200 ms (the rest from the cache).
    std::thread::sleep(Duration::from_millis(250));
    let encoded = metric(addr, "cudainfer_snapshots_encoded_total");
    let started = Instant::now();
    let mut answers = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let (status, _, _) = get(
            addr,
            &format!("/cameras/{id}/snapshot.jpg?width=640"),
            Some(TOKEN),
        );
        assert_eq!(status, 200);
        answers += 1;
    }
    let made = metric(addr, "cudainfer_snapshots_encoded_total") - encoded;
    let bound = (started.elapsed().as_secs_f64() / 0.2).ceil() + 1.0;
    println!("{answers} answers in 2 s from {made} encoded frames (bound {bound})");
    assert!(made >= 1.0 && made <= bound, "{made} > {bound}");

    // CPU time with a client polling 5 times a second, as the page does.
    let before = cpu_ticks(pid);
    let started = Instant::now();
    while started.elapsed() < window {
        let (status, _, _) = get(
            addr,
            &format!("/cameras/{id}/snapshot.jpg?width=640"),
            Some(TOKEN),
        );
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(200));
    }
    let polled_ticks = cpu_ticks(pid) - before;
    let tick = 1.0 / 100.0; // USER_HZ on Linux
    println!(
        "service CPU time over {} s: {:.2} s without a client polling snapshots, {:.2} s with one polling 5/s",
        window.as_secs(),
        idle_ticks as f64 * tick,
        polled_ticks as f64 * tick
    );
    let (_, _, view) = get(addr, &format!("/cameras/{id}"), Some(TOKEN));
    let view: serde_json::Value = serde_json::from_slice(&view).unwrap();
    assert!(view["snapshots_encoded"].as_u64().unwrap() > 0, "{view}");
    assert!(view["objects"]["bicycle"].as_u64() == Some(1), "{view}");
    service.terminate(Duration::from_secs(20));
    // The gate dropped most frames: GStreamer saw nothing wrong in that.
    let log = service.log_text();
    assert!(!log.contains("CRITICAL"), "{log}");
}
