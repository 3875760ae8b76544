//! The service as an attacker or a careless operator meets it: requests
//! before authentication that crashed, killed or hung the API, the
//! token-less API from a web page, special and swapped files, secrets in
//! error texts, settings that cannot work, signals, and the HTTP details.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "k2J9x7QpL0vR4tZ8mW3n";

/// A file that is no video: a camera on it fails and retries.
fn broken_clip(path: &Path) {
    std::fs::write(path, vec![0x5a; 4096]).unwrap();
}

fn cameras_json(service: &Service, token: Option<&str>) -> Vec<serde_json::Value> {
    let (status, body) = service.request("GET", "/cameras", None, token);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn last_error(service: &Service, id: &str) -> String {
    let (_, body) = service.request("GET", &format!("/cameras/{id}"), None, None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["last_error"].as_str().unwrap_or("").to_string()
}

fn alive(service: &mut Service) {
    assert!(
        service.child.try_wait().unwrap().is_none(),
        "the service ended:\n{}",
        service.log_text()
    );
}

/// Without the token: a declared body of 100 GB, bodies of 2^64-1 bytes on
/// every connection, and heads whose bodies never come. Before, the first
/// aborted the process, the second panicked every HTTP worker, the third
/// blocked them all. Now each gets its answer (or a closed connection), the
/// API answers throughout, and the camera publishes on.
#[test]
fn requests_before_authentication_neither_crash_nor_hang_the_api() {
    let dir = temp_dir("preauth");
    let clip = small_clip(&dir, 40);
    let json = dir.join("results.jsonl");
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let (model, json_s, tf) = (
        model(),
        json.display().to_string(),
        token_file.display().to_string(),
    );
    let uri = format!("file://{}", clip.display());
    let mut service = Service::start(
        &[
            "--model",
            &model,
            "--json",
            &json_s,
            "--http",
            "0",
            "--token-file",
            &tf,
            &uri,
        ],
        &[],
    );
    let addr = service.addr.unwrap();
    wait_until("the camera publishing", Duration::from_secs(60), || {
        !read_lines(&json).is_empty()
    });
    let metrics_ok = || {
        let started = Instant::now();
        let (status, _) = http(addr, "GET", "/metrics", None, Some(TOKEN));
        (status, started.elapsed())
    };

    let huge = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n";
    let reply = raw(addr, huge.as_bytes(), Duration::from_secs(5));
    assert_eq!(status_of(&reply), Some(401), "{reply}");
    alive(&mut service);

    for _ in 0..8 {
        let max =
            "POST /cameras HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n";
        let reply = raw(addr, max.as_bytes(), Duration::from_secs(5));
        assert!(
            matches!(status_of(&reply), Some(400 | 401 | 413 | 431) | None),
            "{reply}"
        );
    }
    alive(&mut service);
    assert_eq!(metrics_ok().0, 200);

    // Heads whose bodies never come, with and without the token, more than
    // the old server had workers.
    let stalled_head = |path: &str, token: bool| {
        let mut s = TcpStream::connect(addr).unwrap();
        let auth = if token {
            format!("Authorization: Bearer {TOKEN}\r\n")
        } else {
            String::new()
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        s
    };
    let mut stalled: Vec<TcpStream> = (0..6).map(|_| stalled_head("/cameras", true)).collect();
    stalled.extend((0..6).map(|_| stalled_head("/metrics", false)));
    // Half a head, a byte now and then (slowloris).
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let held_since = Instant::now();
    for _ in 0..5 {
        let (status, took) = metrics_ok();
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(2), "/metrics took {took:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The authorised body that never comes: 408 after the body timeout.
    let mut first = stalled.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = String::new();
    let _ = first.read_to_string(&mut reply);
    assert_eq!(status_of(&reply), Some(408), "{reply}");
    assert!(held_since.elapsed() < Duration::from_secs(15));
    // The half head is dropped after the head timeout.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = slow.write_all(b"X-A: b\r\n");
    let mut rest = Vec::new();
    // Closed: the end of the stream, or a reset (the server did not read
    // what was sent last); a timeout means it is still open.
    let still_open = matches!(slow.read_to_end(&mut rest), Err(e)
        if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
    assert!(!still_open, "the slow client was not disconnected");
    assert!(held_since.elapsed() < Duration::from_secs(16));
    drop(stalled);

    let before = read_lines(&json).len();
    wait_until("the camera publishing on", Duration::from_secs(30), || {
        read_lines(&json).len() > before
    });
    alive(&mut service);
    let status = service.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Under a thread limit a camera that cannot start its thread is a 503
/// with the reason; the service, its API and the cameras already running go
/// on (before: a panic under the camera set's lock, then the main thread's
/// on the poisoned lock, exit 101). `RLIMIT_NPROC` binds only a user
/// without `CAP_SYS_RESOURCE`, so the service runs as `nobody`, which needs
/// root here.
#[test]
fn a_thread_limit_refuses_cameras_with_503() {
    if !nobody_can_run() {
        println!(
            "skipped: needs root, and the service, model and ONNX Runtime readable by nobody, \
             to run the service as nobody under a thread limit"
        );
        return;
    }
    let dir = temp_dir("nproc");
    let clip = small_clip(&dir, 200);
    // nobody reads the clip and writes the results.
    for p in [dir.as_path(), clip.as_path()] {
        let _ = std::process::Command::new("chmod")
            .args(["a+rwx", &p.display().to_string()])
            .status();
    }
    let json = dir.join("results.jsonl");
    let (k, v) = ort_env();
    // Threads of every process of nobody count: a limit this process
    // reaches after a few cameras.
    let limit = "150";
    let port = free_port();
    let (model, json_s, dir_s, port_s) = (
        model(),
        json.display().to_string(),
        dir.display().to_string(),
        port.to_string(),
    );
    let child = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "prlimit",
            &format!("--nproc={limit}"),
            env!("CARGO_BIN_EXE_cudainfer-run"),
            "--model",
            &model,
            "--json",
            &json_s,
            "--http",
            &port_s,
            "--allow-dir",
            &dir_s,
        ])
        .env(k, v)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed however the test ends: a service that hangs must not outlive it.
    let mut child = KilledOnDrop(child);
    let child = &mut child.0;
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let store = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let mut l = store.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_until("the API", Duration::from_secs(30), || {
        TcpStream::connect(addr).is_ok()
    });
    let uri = format!("file://{}", clip.display());
    let body = format!("{{\"uri\": \"{uri}\"}}");
    let ids = ids_for(&[uri.as_str(), uri.as_str()]);
    let mut added = 0;
    let mut refused = None;
    for _ in 0..200 {
        let (status, reply) = http(addr, "POST", "/cameras", Some(body.as_bytes()), None);
        match status {
            201 => added += 1,
            503 => {
                refused = Some(reply);
                break;
            }
            other => panic!("POST /cameras: {other} {reply}\n{}", log.lock().unwrap()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let reply =
        refused.unwrap_or_else(|| panic!("no 503 after {added} cameras:\n{}", log.lock().unwrap()));
    println!("{added} cameras added, then: {reply}");
    assert!(reply.contains("limit on threads or processes"), "{reply}");
    assert!(added >= 1);
    // The process and its API live on; the first camera publishes on.
    assert!(
        child.try_wait().unwrap().is_none(),
        "{}",
        log.lock().unwrap()
    );
    let (status, _) = http(addr, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let first = |lines: &[serde_json::Value]| lines_of(lines, &ids[0]).len();
    let before = first(&read_lines(&json));
    wait_until("the camera publishing on", Duration::from_secs(30), || {
        first(&read_lines(&json)) > before
    });
    // Room again after a removal.
    let (status, _) = http(addr, "DELETE", &format!("/cameras/{}", ids[1]), None, None);
    assert!(status == 204 || status == 404);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no exit on SIGTERM:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Under a low limit on open files, idle connections no longer take the
/// descriptors a camera needs: a camera restarting while 100 connections
/// are held builds its pipeline and publishes. Before, the connections took
/// every descriptor; the camera's next pipeline could not load its
/// elements ("uridecodebin is missing") or got a bus that could not wait,
/// and its loop spun on both cores, logging a GStreamer-CRITICAL each turn.
#[test]
fn held_connections_leave_the_cameras_their_descriptors() {
    let dir = temp_dir("nofile");
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let good = small_clip(&dir, 100);
    let camera = allowed.join("camera.mkv");
    broken_clip(&camera);
    let json = dir.join("results.jsonl");
    let (model, json_s) = (model(), json.display().to_string());
    let uri = format!("file://{}", camera.display());
    let mut service = Service::start_with(
        &["--nofile=64"],
        &["--model", &model, "--json", &json_s, "--http", "0", &uri],
        &[],
    );
    let addr = service.addr.unwrap();
    assert!(service.log_text().contains("open_files=64"));
    let id = ids_for(&[uri.as_str()]).remove(0);
    wait_until("the camera failing", Duration::from_secs(30), || {
        !last_error(&service, &id).is_empty()
    });
    let held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Its next try (within a second of backoff) finds a clip that plays.
    std::fs::rename(&good, &camera).unwrap();
    let held_since = Instant::now();
    while read_lines(&json).is_empty() {
        assert!(
            held_since.elapsed() < Duration::from_secs(8),
            "no results while the connections were held:\n{}",
            service.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    let log = service.log_text();
    assert!(!log.contains("CRITICAL"), "{log}");
    alive(&mut service);
    let status = service.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A camera whose frames are over 8K is refused before a decoder is made,
/// with the reason: a small file declaring 16000x16000 frames took 3.3 GB.
#[test]
fn frames_over_8k_are_refused() {
    let dir = temp_dir("huge");
    let clip = dir.join("wide.mkv");
    let made = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=3", "!"])
        .args([
            "video/x-raw,width=8200,height=16,framerate=5/1",
            "!",
            "jpegenc",
            "!",
        ])
        .args(["matroskamux", "!", "filesink"])
        .arg(format!("location={}", clip.display()))
        .status()
        .unwrap();
    assert!(made.success());
    let model = model();
    let uri = format!("file://{}", clip.display());
    let mut service = Service::start(&["--model", &model, "--http", "0", &uri], &[]);
    let id = ids_for(&[uri.as_str()]).remove(0);
    wait_until("the camera refused", Duration::from_secs(30), || {
        last_error(&service, &id).contains("frames are 8200x16, over the 8192x4320")
    });
    alive(&mut service);
    let status = service.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A camera whose source never sends a frame (a server that takes the
/// connection and never answers) is removed at once: there is nothing to
/// drain (before, the removal waited the 5 s EOS timeout).
#[test]
fn removing_a_camera_that_never_started_is_prompt() {
    // Connections complete in the backlog; nothing is ever answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}/camera.mkv", silent.local_addr().unwrap());
    let model = model();
    let mut service = Service::start(&["--model", &model, "--http", "0", &uri], &[]);
    let id = ids_for(&[uri.as_str()]).remove(0);
    std::thread::sleep(Duration::from_secs(2));
    let cameras = cameras_json(&service, None);
    assert_eq!(cameras[0]["state"], "connecting", "{cameras:?}");
    let asked = Instant::now();
    let (status, _) = service.request("DELETE", &format!("/cameras/{id}"), None, None);
    assert_eq!(status, 204);
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "the removal took {took:?}");
    alive(&mut service);
    let status = service.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    drop(silent);
}

/// Whether this test can run the service as `nobody` (uid 65534): it is
/// root, and nobody can reach the binary, the model and ONNX Runtime (a
/// checkout under a private home directory is out of nobody's reach).
fn nobody_can_run() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        return false;
    }
    let (_, ort) = ort_env();
    std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "test",
            "-x",
        ])
        .arg(env!("CARGO_BIN_EXE_cudainfer-run"))
        .args(["-a", "-r", &model(), "-a", "-r", &ort])
        .status()
        .is_ok_and(|s| s.success())
}

/// Settings that cannot work stop the service at start with a message
/// that says which and what to do; none shows a secret.
#[test]
fn bad_settings_stop_the_start_without_showing_secrets() {
    let dir = temp_dir("settings");
    let model = model();
    let labels = labels();
    let not_onnx = dir.join("model.onnx");
    std::fs::write(&not_onnx, "not a model\n").unwrap();
    let (not_onnx_s, dir_s) = (not_onnx.display().to_string(), dir.display().to_string());
    let missing_dir = dir.join("missing/r.jsonl").display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", &model, "--model-type", "foo", "rtsp://h/x"],
            "--model-type 'foo' is not a model type: use one of yolox",
        ),
        (
            vec!["--model", &not_onnx_s, "rtsp://h/x"],
            "the model cannot run with these settings",
        ),
        (
            vec!["--model", &model, "--providers", "bogus", "rtsp://h/x"],
            "unknown execution provider 'bogus'",
        ),
        (
            vec![
                "--model",
                &model,
                "--labels",
                "/nonexistent/labels.txt",
                "rtsp://h/x",
            ],
            "is not a readable file",
        ),
        (
            vec![
                "--model",
                &model,
                "--labels",
                &labels,
                "--json",
                "/dev/full",
                "rtsp://h/x",
            ],
            "not a regular file",
        ),
        (
            vec!["--model", &model, "--json", &dir_s, "rtsp://h/x"],
            "not a regular file",
        ),
        (
            vec!["--model", &model, "--json", &missing_dir, "rtsp://h/x"],
            "cannot open it for appending",
        ),
        (
            vec![
                "--model",
                &model,
                "rtsp://user:secretpass/x@127.0.0.1:18554/x",
            ],
            "percent-encoded",
        ),
        (
            vec!["--model", &model, "rtmp://admin:secretpass@h/x"],
            "scheme 'rtmp' is not a camera source",
        ),
        (
            vec![
                "--model",
                &model,
                "--once",
                "--max-cameras",
                "1",
                "rtsp://h/a",
                "rtsp://h/b",
            ],
            "--max-cameras: '1' is not valid",
        ),
    ];
    for (args, expected) in &cases {
        let (code, err) = run_to_end(args, Duration::from_secs(30));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("secretpass"), "{args:?}: {err}");
    }
    // The config file's excerpt is not printed: its line holds the secret.
    let config = dir.join("c.toml");
    for text in [
        "cameras = \"rtsp://admin:secretpass@10.0.0.5/s\"\n".to_string(),
        format!("model = \"{model}\"\ntoken = \"secretpass-secretpass\"\n"),
    ] {
        std::fs::write(&config, text).unwrap();
        let (code, err) = run_to_end(
            &["--config", &config.display().to_string()],
            Duration::from_secs(30),
        );
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("line 1") || err.contains("line 2"), "{err}");
        assert!(!err.contains("secretpass"), "{err}");
    }
    // A results file the service may not write (as nobody: root writes any).
    if nobody_can_run() {
        let read_only = dir.join("ro.jsonl");
        std::fs::write(&read_only, "").unwrap();
        let _ = std::process::Command::new("chmod")
            .args(["a+rx", &dir_s])
            .status();
        let (k, v) = ort_env();
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_cudainfer-run"))
            .args([
                "--model",
                &model,
                "--json",
                &read_only.display().to_string(),
                "rtsp://h/x",
            ])
            .env(k, v)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("cannot open it for appending"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A FIFO is no camera: refused when added and on the command line (it
/// made DELETE and SIGTERM wait forever). A file swapped after it was
/// added (for a link out of --allow-dir, for a FIFO) is refused at the
/// camera's next start, and removing it is prompt.
#[test]
fn special_and_swapped_files_are_refused() {
    let dir = temp_dir("special");
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let fifo = allowed.join("fifo.mp4");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let model = model();
    let fifo_uri = format!("file://{}", fifo.display());
    let (code, err) = run_to_end(&["--model", &model, &fifo_uri], Duration::from_secs(30));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a regular file"), "{err}");

    let outside = small_clip(&dir, 20);
    let camera = allowed.join("camera.mkv");
    broken_clip(&camera);
    let json = dir.join("results.jsonl");
    let (json_s, allowed_s) = (json.display().to_string(), allowed.display().to_string());
    let mut service = Service::start(
        &[
            "--model",
            &model,
            "--json",
            &json_s,
            "--http",
            "0",
            "--allow-dir",
            &allowed_s,
        ],
        &[],
    );
    let (status, reply) = service.request(
        "POST",
        "/cameras",
        Some(format!("{{\"uri\": \"{fifo_uri}\"}}").as_bytes()),
        None,
    );
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("not a regular file"), "{reply}");
    let body = format!("{{\"uri\": \"file://{}\"}}", camera.display());
    let (status, reply) = service.request("POST", "/cameras", Some(body.as_bytes()), None);
    assert_eq!(status, 201, "{reply}");
    let id = ids_for(&[&format!("file://{}", camera.display())]).remove(0);
    wait_until("the camera failing", Duration::from_secs(30), || {
        !last_error(&service, &id).is_empty()
    });
    // Swapped for a link to a good clip outside: refused, never played.
    std::fs::remove_file(&camera).unwrap();
    std::os::unix::fs::symlink(&outside, &camera).unwrap();
    wait_until("the link refused", Duration::from_secs(30), || {
        last_error(&service, &id).contains("outside the allowed directories")
    });
    // Swapped for a FIFO: refused, not opened.
    std::fs::remove_file(&camera).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(&camera)
        .status()
        .unwrap()
        .success());
    wait_until("the FIFO refused", Duration::from_secs(30), || {
        last_error(&service, &id).contains("not a regular file")
    });
    assert!(read_lines(&json).is_empty(), "the camera published");
    let started = Instant::now();
    let (status, _) = service.request("DELETE", &format!("/cameras/{id}"), None, None);
    assert_eq!(status, 204);
    assert!(started.elapsed() < Duration::from_secs(3));
    alive(&mut service);
    let status = service.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The token-less loopback API refuses what a web page could send: a
/// cross-origin form post, a JSON post from another origin, a rebound DNS
/// name; files outside --allow-dir get one answer whether they exist or
/// not; ids have one spelling; the HTTP details are right.
#[test]
fn the_tokenless_api_refuses_web_pages_and_answers_exactly() {
    let dir = temp_dir("browser");
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let clip = small_clip(&allowed, 50);
    std::fs::write(dir.join("secret.txt"), "x").unwrap();
    let model = model();
    let json = dir.join("results.jsonl");
    let (json_s, allowed_s) = (json.display().to_string(), allowed.display().to_string());
    let uri = format!("file://{}", clip.display());
    let mut service = Service::start(
        &[
            "--model",
            &model,
            "--json",
            &json_s,
            "--http",
            "0",
            "--allow-dir",
            &allowed_s,
            "--max-cameras",
            "2",
            &uri,
        ],
        &[],
    );
    let addr = service.addr.unwrap();
    let body = format!("{{\"uri\": \"{uri}\"}}");
    let post = |extra: &str, content_type: &str| {
        let request = format!(
            "POST /cameras HTTP/1.1\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        raw(addr, request.as_bytes(), Duration::from_secs(10))
    };
    let local = format!("Host: {addr}\r\n");
    let cases = [
        (format!("{local}Origin: http://evil\r\n"), "text/plain", 403),
        (
            format!("{local}Origin: http://evil\r\n"),
            "application/json",
            403,
        ),
        ("Host: rebind.evil\r\n".to_string(), "application/json", 403),
        (
            format!("Host: rebind.evil:{}\r\n", addr.port()),
            "application/json",
            403,
        ),
        (local.clone(), "text/plain", 415),
        (local.clone(), "application/x-www-form-urlencoded", 415),
    ];
    for (extra, content_type, expected) in &cases {
        let reply = post(extra, content_type);
        assert_eq!(
            status_of(&reply),
            Some(*expected),
            "{extra} {content_type}: {reply}"
        );
    }
    assert_eq!(cameras_json(&service, None).len(), 1, "a camera was added");
    // What a tool sends is accepted; the limit answers 409.
    let reply = post(&local, "application/json");
    assert_eq!(status_of(&reply), Some(201), "{reply}");
    let reply = post(&local, "application/json; charset=utf-8");
    assert_eq!(status_of(&reply), Some(409), "{reply}");
    assert!(reply.contains("--max-cameras"), "{reply}");

    // No file-existence oracle outside --allow-dir.
    let outside = |name: &str| {
        let body = format!("{{\"uri\": \"file://{}/{name}\"}}", dir.display());
        service.request("POST", "/cameras", Some(body.as_bytes()), None)
    };
    let (a, a_reply) = outside("secret.txt");
    let (b, b_reply) = outside("nonexistent.txt");
    assert_eq!((a, b), (403, 403), "{a_reply} {b_reply}");
    assert_eq!(
        a_reply.replace("secret.txt", "X"),
        b_reply.replace("nonexistent.txt", "X")
    );

    // One camera, one name: no other spelling reaches it.
    let expected = ids_for(&[uri.as_str(), uri.as_str()]);
    let first = &expected[0];
    let upper = first.to_uppercase();
    let padded = format!("{first}%20");
    let encoded = first.replace('-', "%2d");
    let dotted = format!("./{first}");
    for id in [&upper, &padded, &encoded, &dotted] {
        let (status, _) = service.request("DELETE", &format!("/cameras/{id}"), None, None);
        assert_eq!(status, 404, "{id}");
    }
    let ids: Vec<String> = cameras_json(&service, None)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);

    // 405 says what is allowed; an HTTP/2.0 request line gets an answer.
    let reply = raw(
        addr,
        format!("PUT /cameras HTTP/1.1\r\n{local}Connection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    );
    assert_eq!(status_of(&reply), Some(405), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("\r\nallow: get, post\r\n"),
        "{reply}"
    );
    let reply = raw(
        addr,
        format!("GET /metrics HTTP/2.0\r\n{local}\r\n").as_bytes(),
        Duration::from_secs(10),
    );
    assert!(
        status_of(&reply) == Some(400),
        "no answer to HTTP/2.0: {reply:?}"
    );
    alive(&mut service);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Credentials with an unencoded '/' are refused, quoting nothing; raw
/// control characters from a folder's name reach neither the log nor the
/// status table.
#[test]
fn odd_uris_leak_no_secret_and_no_control_characters() {
    let dir = temp_dir("odd");
    let crafted = dir.join("a\u{1b}[31mRED\rlevel=error");
    std::fs::create_dir_all(&crafted).unwrap();
    broken_clip(&crafted.join("c.mkv"));
    let encoded: String = crafted
        .join("c.mkv")
        .display()
        .to_string()
        .replace('\u{1b}', "%1B")
        .replace('\r', "%0D");
    let model = model();
    let camera = format!("file://{encoded}");
    let query_camera = "rtsp://127.0.0.1:1/x?channel=1&user=admin&password=qsecretpass";
    let mut service = Service::start(
        &[
            "--model",
            &model,
            "--http",
            "0",
            "--status",
            &camera,
            query_camera,
        ],
        &[],
    );
    wait_until(
        "the crafted camera failing",
        Duration::from_secs(30),
        || !last_error(&service, &ids_for(&[camera.as_str()])[0]).is_empty(),
    );
    // Two status tables drawn at least.
    std::thread::sleep(Duration::from_millis(2500));
    let body = br#"{"uri": "rtsp://user:secretpass/x@127.0.0.1:18554/x"}"#;
    let (status, reply) = service.request("POST", "/cameras", Some(body), None);
    assert_eq!(status, 400, "{reply}");
    assert!(!reply.contains("secretpass"), "{reply}");
    let (_, cameras) = service.request("GET", "/cameras", None, None);
    alive(&mut service);
    let log = service.log_text();
    assert!(
        cameras.contains("?channel=1&user=<redacted>&password=<redacted>"),
        "{cameras}"
    );
    for (what, text) in [("log", &log), ("reply", &reply), ("cameras", &cameras)] {
        assert!(
            !text.contains("secretpass"),
            "the password is in the {what}"
        );
        assert!(!text.contains("\u{1b}[31m"), "raw ESC in the {what}");
        assert!(!text.contains('\r'), "raw CR in the {what}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGHUP reopens the results file (log rotation) and ends nothing: the
/// recording goes on, lines go to the new file, SIGTERM still finalises.
#[test]
fn sighup_reopens_the_results_file() {
    let dir = temp_dir("sighup");
    let clip = small_clip(&dir, 50);
    let json = dir.join("results.jsonl");
    let rotated = dir.join("results.jsonl.1");
    let record = dir.join("rec");
    std::fs::create_dir_all(&record).unwrap();
    let (model, json_s, record_s) = (
        model(),
        json.display().to_string(),
        record.display().to_string(),
    );
    let uri = format!("file://{}", clip.display());
    let mut service = Service::start(
        &[
            "--model", &model, "--json", &json_s, "--record", &record_s, "--http", "0", &uri,
        ],
        &[],
    );
    wait_until("lines", Duration::from_secs(60), || {
        read_lines(&json).len() >= 5
    });
    std::fs::rename(&json, &rotated).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &service.child.id().to_string()])
        .status();
    service.wait_log("event=outputs_reopened", Duration::from_secs(10));
    wait_until("lines in the new file", Duration::from_secs(30), || {
        read_lines(&json).len() >= 3
    });
    alive(&mut service);
    let old = read_lines(&rotated);
    let new = read_lines(&json);
    // The lines continue across the two files, none lost or doubled.
    let seq = |l: &serde_json::Value| l["seq"].as_u64().unwrap();
    let last_old = old.iter().map(seq).max().unwrap();
    let first_new = new.iter().map(seq).min().unwrap();
    assert_eq!(
        first_new,
        last_old + 1,
        "old ends at {last_old}, new starts at {first_new}"
    );
    let status = service.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit {status}");
    let segments: Vec<_> = std::fs::read_dir(&record)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert!(!segments.is_empty());
    assert!(
        segments.iter().all(|&n| n > 0),
        "an empty recording: {segments:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A one-route HTTP server on 127.0.0.1 for the tests below: answers every
/// request with `reply` and keeps each request's head.
fn http_server(reply: String) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, heads)
}

/// A playlist is no camera: its demuxer would fetch what it lists, local
/// files outside --allow-dir included, past every check. Refused from a
/// file and from an HTTP server alike, with a message that says so.
#[test]
fn playlists_are_refused() {
    let dir = temp_dir("playlist");
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let secret = small_clip(&dir, 20);
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile://{}\n#EXT-X-ENDLIST\n",
        secret.display()
    );
    std::fs::write(allowed.join("evil.m3u8"), &playlist).unwrap();
    let (port, _) = http_server(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{playlist}",
        playlist.len()
    ));
    let json = dir.join("results.jsonl");
    let (model, json_s, allowed_s) = (
        model(),
        json.display().to_string(),
        allowed.display().to_string(),
    );
    let mut service = Service::start(
        &[
            "--model",
            &model,
            "--json",
            &json_s,
            "--http",
            "0",
            "--allow-dir",
            &allowed_s,
            "--once",
        ],
        &[],
    );
    let mut ids = Vec::new();
    for uri in [
        format!("file://{}/evil.m3u8", allowed.display()),
        format!("http://127.0.0.1:{port}/evil.m3u8"),
    ] {
        let body = format!("{{\"uri\": \"{uri}\"}}");
        let (status, reply) = service.request("POST", "/cameras", Some(body.as_bytes()), None);
        assert_eq!(status, 201, "{reply}");
        ids.push(ids_for(&[uri.as_str()]).remove(0));
    }
    for id in &ids {
        wait_until(
            &format!("{id} refused as a playlist"),
            Duration::from_secs(30),
            || last_error(&service, id).contains("is a playlist"),
        );
    }
    assert!(
        read_lines(&json).is_empty(),
        "a playlist's segment was played"
    );
    alive(&mut service);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Credentials of an HTTP camera go to its host only: a redirect to
/// another is not followed with them.
#[test]
fn a_redirect_gets_no_credentials() {
    let (target, target_heads) = http_server(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_string(),
    );
    let (camera, camera_heads) = http_server(format!(
        "HTTP/1.1 302 Found\r\nLocation: http://localhost:{target}/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    let model = model();
    let uri = format!("http://camuser:CamPassw0rd@127.0.0.1:{camera}/video.mjpg");
    let mut service = Service::start(&["--model", &model, "--http", "0", &uri], &[]);
    wait_until("the camera asked", Duration::from_secs(30), || {
        !camera_heads.lock().unwrap().is_empty()
    });
    let id = ids_for(&[uri.as_str()]).remove(0);
    wait_until("the camera failing", Duration::from_secs(30), || {
        !last_error(&service, &id).is_empty()
    });
    let leaked: Vec<String> = target_heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.to_ascii_lowercase().contains("authorization"))
        .cloned()
        .collect();
    assert!(
        leaked.is_empty(),
        "credentials sent to the redirect: {leaked:?}"
    );
    alive(&mut service);
}

/// Clients that send requests and never read the answers lose their
/// connections after the write timeout; meanwhile and after, the API
/// answers others.
#[test]
fn clients_that_never_read_are_cut_off() {
    let model = model();
    let service = Service::start(&["--model", &model, "--http", "0"], &[]);
    let addr = service.addr.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let pipelined = request.repeat(3000);
    let mut hogs: Vec<TcpStream> = (0..16)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .collect();
    for s in &mut hogs {
        // Until the server stops reading: its answers fill the buffers.
        let _ = s.write_all(pipelined.as_bytes());
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let (status, _) = service.request("GET", "/metrics", None, None);
        assert_eq!(status, 200);
        assert!(t.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(200));
    }
    // After the write timeout each hog's connection is closed: reading
    // what was sent reaches its end (or a reset) instead of blocking.
    std::thread::sleep(Duration::from_secs(12));
    for s in &mut hogs {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut sink = Vec::new();
        let result = s.read_to_end(&mut sink);
        let timed_out = matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut);
        assert!(!timed_out, "a connection that never read is still open");
    }
    let (status, _) = service.request("GET", "/metrics", None, None);
    assert_eq!(status, 200);
}

/// A refused request's body is read before the refusal is sent: a client
/// that writes all of it and only then reads gets the 413 (or 401), not a
/// connection reset that lost the answer.
#[test]
fn refused_bodies_still_get_their_answer() {
    let model = model();
    let dir = temp_dir("refused-bodies");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "k2J9x7QpL0vR4tZ8mW3n\n").unwrap();
    let tf = token_file.display().to_string();
    let service = Service::start(
        &["--model", &model, "--http", "0", "--token-file", &tf],
        &[],
    );
    let addr = service.addr.unwrap();
    let cases = [
        (
            512 * 1024,
            "Authorization: Bearer k2J9x7QpL0vR4tZ8mW3n\r\n",
            413,
        ),
        (
            64 * 1024,
            "Authorization: Bearer k2J9x7QpL0vR4tZ8mW3n\r\n",
            413,
        ),
        (256 * 1024, "", 401),
    ];
    for (len, auth, expected) in cases {
        for chunked in [false, true] {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let framing = if chunked {
                "Transfer-Encoding: chunked".to_string()
            } else {
                format!("Content-Length: {len}")
            };
            let head = format!(
                "POST /cameras HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
            );
            let mut request = head.into_bytes();
            if chunked {
                for _ in 0..len / 4096 {
                    request.extend_from_slice(b"1000\r\n");
                    request.extend_from_slice(&[b' '; 4096]);
                    request.extend_from_slice(b"\r\n");
                }
                request.extend_from_slice(b"0\r\n\r\n");
            } else {
                request.extend(std::iter::repeat_n(b' ', len));
            }
            stream
                .write_all(&request)
                .unwrap_or_else(|e| panic!("{len} bytes (chunked {chunked}) not accepted: {e}"));
            // Time for a reset, if one comes, to arrive before the read.
            std::thread::sleep(Duration::from_millis(300));
            let mut reply = Vec::new();
            let read = stream.read_to_end(&mut reply);
            let reply = String::from_utf8_lossy(&reply);
            assert!(
                read.is_ok(),
                "{len} bytes (chunked {chunked}): {read:?} after {reply:?}"
            );
            assert_eq!(
                status_of(&reply),
                Some(expected),
                "{len} bytes (chunked {chunked}): {reply:?}"
            );
        }
    }
    assert!(cameras_json(&service, Some("k2J9x7QpL0vR4tZ8mW3n")).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A results file swapped for a FIFO before SIGHUP is not opened (that
/// would block until a reader came): the old file is kept with a warning,
/// and SIGTERM still ends the service at once.
#[test]
fn sighup_does_not_open_a_fifo() {
    let dir = temp_dir("sighup-fifo");
    let clip = small_clip(&dir, 50);
    let json = dir.join("results.jsonl");
    let (model, json_s) = (model(), json.display().to_string());
    let uri = format!("file://{}", clip.display());
    let mut service = Service::start(
        &["--model", &model, "--json", &json_s, "--http", "0", &uri],
        &[],
    );
    wait_until("lines", Duration::from_secs(60), || {
        !read_lines(&json).is_empty()
    });
    std::fs::rename(&json, dir.join("old.jsonl")).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(&json)
        .status()
        .unwrap()
        .success());
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &service.child.id().to_string()])
        .status();
    let line = service.wait_log("event=outputs_reopened", Duration::from_secs(10));
    assert!(line.contains("elements=0"), "{line}");
    alive(&mut service);
    let started = Instant::now();
    let status = service.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit {status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An ONNX Runtime that cannot be loaded stops the start with advice the
/// service's user can follow: the environment, not trtinfer's property.
#[test]
fn a_missing_onnx_runtime_is_explained_for_the_service() {
    let model = model();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cudainfer-run"))
        .args(["--model", &model, "--http", "0"])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ORT_DYLIB_PATH (cudainfer-run's environment)"),
        "{err}"
    );
    assert!(!err.contains("ort-library"), "{err}");
}
