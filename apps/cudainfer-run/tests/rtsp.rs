//! Four RTSP cameras (local gst-rtsp-server processes on 127.0.0.1 serving
//! dog_1080p.mp4, re-payloaded without re-encoding); the server of one is
//! killed and restarted.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The killed camera's credentials: its server asks for them (Basic auth),
/// and none of the service's outputs may show them.
const USER: &str = "viewer7";
const PASSWORD: &str = "Secr3tPassw0rdXyz";
const CLIP_FRAMES: usize = 300;

/// Not a test: the RTSP server process that the test below starts (this
/// test binary run again with CUDAINFER_RUN_RTSP_PORT set), so that it can
/// be killed like a camera's server.
#[test]
#[ignore = "helper process of rtsp_cameras_survive_a_server_restart"]
fn rtsp_server_helper() {
    use gst_rtsp_server::prelude::*;
    let port = std::env::var("CUDAINFER_RUN_RTSP_PORT").expect("run by the test");
    gst::init().unwrap();
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port);
    let factory = gst_rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(&format!(
        "( filesrc location={} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
        clip().display()
    ));
    factory.set_shared(false);
    if let (Ok(user), Ok(password)) = (
        std::env::var("CUDAINFER_RUN_RTSP_USER"),
        std::env::var("CUDAINFER_RUN_RTSP_PASSWORD"),
    ) {
        let auth = gst_rtsp_server::RTSPAuth::new();
        let token = gst_rtsp_server::RTSPToken::builder()
            .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
            .build();
        auth.add_basic(
            &gst_rtsp_server::RTSPAuth::make_basic(&user, &password),
            &token,
        );
        server.set_auth(Some(&auth));
        factory.add_role_from_structure(
            &gst::Structure::builder("user")
                .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build(),
        );
    }
    server.mount_points().unwrap().add_factory("/cam", factory);
    let _source = server.attach(None).expect("the port is free");
    println!("READY");
    glib::MainLoop::new(None, false).run();
}

struct RtspServer {
    child: Child,
}

impl RtspServer {
    fn start(port: u16, credentials: bool) -> RtspServer {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--ignored",
            "--exact",
            "rtsp_server_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CUDAINFER_RUN_RTSP_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if credentials {
            cmd.env("CUDAINFER_RUN_RTSP_USER", USER)
                .env("CUDAINFER_RUN_RTSP_PASSWORD", PASSWORD);
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0
            && !line.contains("READY")
        {
            line.clear();
        }
        assert!(
            line.contains("READY"),
            "the RTSP server on port {port} did not start"
        );
        // Keep reading so that the helper never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        RtspServer { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A camera's runs: each pipeline's lines (its results element's `seq`
/// starts at 0; the stream id of an RTSP camera stays the same).
fn runs<'a>(lines: &[&'a serde_json::Value]) -> Vec<Vec<&'a serde_json::Value>> {
    let mut runs: Vec<Vec<&serde_json::Value>> = Vec::new();
    for l in lines {
        if l["seq"] == 0 || runs.is_empty() {
            runs.push(Vec::new());
        }
        runs.last_mut().unwrap().push(l);
    }
    runs
}

fn first_stream<'a>(lines: &[&'a serde_json::Value]) -> Vec<&'a serde_json::Value> {
    runs(lines).into_iter().next().unwrap_or_default()
}

#[test]
fn rtsp_cameras_survive_a_server_restart() {
    let dir = temp_dir("rtsp");
    let json = dir.join("results.jsonl");
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut servers: Vec<RtspServer> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| RtspServer::start(*p, i == 0))
        .collect();
    let mut uris = vec![format!(
        "rtsp://{USER}:{PASSWORD}@127.0.0.1:{}/cam",
        ports[0]
    )];
    uris.extend(
        ports[1..]
            .iter()
            .map(|p| format!("rtsp://127.0.0.1:{p}/cam")),
    );

    let (model, labels, json_s) = (model(), labels(), json.display().to_string());
    // Every frame inferred: four 1080p RTSP cameras are more than two CPU
    // cores decode and infer, and with the default (skip, for live
    // sources) frames would pass on without the dog; this test is about
    // reconnecting.
    let mut args = vec![
        "--model",
        &model,
        "--labels",
        &labels,
        "--json",
        &json_s,
        "--http",
        "0",
        "--status",
        "--overload",
        "block",
    ];
    args.extend(uris.iter().map(String::as_str));
    let mut service = Service::start(&args, &[]);
    let ids = ids_for(&uris.iter().map(String::as_str).collect::<Vec<_>>());
    // Camera i (from 1) of the list.
    let cam = |i: usize| ids[i - 1].clone();

    // All four deliver detections.
    let start = Instant::now();
    wait_until(
        "30 lines from every camera",
        Duration::from_secs(90),
        || {
            let lines = read_lines(&json);
            (1..=4).all(|i| lines_of(&lines, &cam(i)).len() >= 30)
        },
    );
    let lines = read_lines(&json);
    for i in 1..=4 {
        let results = lines_of(&lines, &cam(i));
        assert!(
            results.iter().all(|l| has_label(l, "dog")),
            "{}: a frame without the dog",
            cam(i)
        );
    }
    println!(
        "four cameras delivering after {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // Kill the first camera's server; watch the other three while it is away.
    let counts = |lines: &[serde_json::Value]| -> BTreeMap<String, usize> {
        (1..=4)
            .map(|i| (cam(i), lines_of(lines, &cam(i)).len()))
            .collect()
    };
    servers[0].kill();
    let killed_at = Instant::now();
    let mut last_growth: BTreeMap<String, (usize, Instant)> = counts(&read_lines(&json))
        .into_iter()
        .map(|(k, v)| (k, (v, Instant::now())))
        .collect();
    let mut longest_pause = BTreeMap::<String, Duration>::new();
    let mut sample = |last_growth: &mut BTreeMap<String, (usize, Instant)>| {
        let lines = read_lines(&json);
        for (cam, n) in counts(&lines) {
            // A camera at the end of its clip pauses for its own reasons.
            let done = first_stream(&lines_of(&lines, &cam)).len() >= CLIP_FRAMES * 95 / 100;
            let entry = last_growth.get_mut(&cam).unwrap();
            if n != entry.0 || done {
                entry.0 = n;
                entry.1 = Instant::now();
            }
            let pause = entry.1.elapsed();
            let longest = longest_pause.entry(cam).or_default();
            *longest = (*longest).max(pause);
        }
    };
    while killed_at.elapsed() < Duration::from_secs(2) {
        sample(&mut last_growth);
        std::thread::sleep(Duration::from_millis(100));
    }
    servers[0] = RtspServer::start(ports[0], true);
    let restarted_at = Instant::now();
    let mut back_after = None;
    while restarted_at.elapsed() < Duration::from_secs(30) {
        sample(&mut last_growth);
        let lines = read_lines(&json);
        if runs(&lines_of(&lines, &cam(1))).len() > 1 {
            back_after = Some(restarted_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let back_after = back_after
        .unwrap_or_else(|| panic!("{} not back within 30 s:\n{}", cam(1), service.log_text()));
    println!(
        "{} back {:.2} s after its server restarted",
        cam(1),
        back_after.as_secs_f64()
    );
    assert!(
        back_after < Duration::from_secs(15),
        "{} back only after {back_after:?}",
        cam(1)
    );

    // The other three: their whole clip (the server's EOS ends a run, and
    // the camera starts the next), no frame dropped inside the service, no stall.
    wait_until(
        "the other cameras' whole clip",
        Duration::from_secs(150),
        || {
            let lines = read_lines(&json);
            (2..=4).all(|i| runs(&lines_of(&lines, &cam(i))).len() >= 2)
        },
    );
    let lines = read_lines(&json);
    let metrics = service.metrics();
    for i in 2..=4 {
        let cam = cam(i);
        let stream = first_stream(&lines_of(&lines, &cam));
        let seq: Vec<u64> = stream.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        assert!(
            seq.windows(2).all(|w| w[1] == w[0] + 1),
            "{cam}: seq has a gap"
        );
        let dropped = metrics.camera("cudainfer_camera_dropped_total", &cam);
        let pause = longest_pause[&cam];
        println!(
            "{cam}: {} of {CLIP_FRAMES} frames in its first run, {dropped} dropped, longest pause while the first camera was away and coming back {:.2} s",
            stream.len(),
            pause.as_secs_f64()
        );
        assert_eq!(dropped, 0.0, "{cam} dropped frames");
        // rtspsrc does not hand on all 300, on an idle host either (295-298):
        // the first run ends ~0.3 s before the clip does, the server's BYE
        // ending the stream with the jitterbuffer's last ~200 ms unplayed,
        // and its RTP timestamps jitter too much to tell a lost frame from
        // a late one. Inside the service nothing is lost (seq, dropped).
        assert!(
            stream.len() >= CLIP_FRAMES * 95 / 100,
            "{cam} lost frames: {}",
            stream.len()
        );
        assert!(pause < Duration::from_secs(3), "{cam} stalled {pause:?}");
    }

    let reconnects = metrics.camera("cudainfer_camera_reconnects_total", &cam(1));
    assert!(reconnects >= 1.0, "{}'s reconnects not counted", cam(1));
    println!("{} reconnects: {reconnects}", cam(1));
    for i in 2..=4 {
        // The others reconnect only at the end of the clip (the server's EOS).
        let lines = read_lines(&json);
        let cam = cam(i);
        let runs = runs(&lines_of(&lines, &cam)).len();
        let r = metrics.camera("cudainfer_camera_reconnects_total", &cam);
        assert!(r <= runs as f64, "{cam}: {r} reconnects for {runs} runs");
    }

    // The password reaches the server (the first camera is served) and no output.
    let (_, cameras) = service.request("GET", "/cameras", None, None);
    let (_, metrics_text) = service.request("GET", "/metrics", None, None);
    assert!(cameras.contains("rtsp://<redacted>@127.0.0.1"), "{cameras}");
    let status = service.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit {status}");
    let outputs = [
        ("log", service.log_text()),
        ("/cameras", cameras),
        ("/metrics", metrics_text),
        ("JSON", std::fs::read_to_string(&json).unwrap()),
    ];
    for (what, text) in &outputs {
        assert!(!text.contains(PASSWORD), "the password is in the {what}");
        assert!(!text.contains(USER), "the user name is in the {what}");
    }
    assert!(service
        .log_text()
        .contains(&format!("event=camera_failed camera={}", cam(1))));
    std::fs::remove_dir_all(&dir).unwrap();
}
