//! Helpers of the service tests: the binary as a child process, a small
//! HTTP client, the JSON lines it writes, local RTSP servers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared test data, found as the plugin's tests find it.
pub fn shared_dir() -> PathBuf {
    [
        std::env::var_os("CUDAINFER_SHARED_DIR").map(PathBuf::from),
        Some(repo_root().join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("models/yolox_nano.onnx").exists())
    .expect(
        "test data not found: set CUDAINFER_SHARED_DIR to the folder holding models/ and media/",
    )
}

pub fn model() -> String {
    shared_dir()
        .join("models/yolox_nano.onnx")
        .display()
        .to_string()
}

pub fn labels() -> String {
    shared_dir()
        .join("models/coco-labels.txt")
        .display()
        .to_string()
}

pub fn clip() -> PathBuf {
    shared_dir().join("media/dog_1080p.mp4")
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cudainfer-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small, cheap camera: `frames` frames of 320x240 at 5 fps, MJPEG in
/// Matroska (jpegenc/jpegdec are in every GStreamer install), so that many
/// cameras fit on a 2-core CI machine.
pub fn small_clip(dir: &Path, frames: u32) -> PathBuf {
    let path = dir.join(format!("small-{frames}.mkv"));
    let frames = format!("num-buffers={frames}");
    let source = [
        "videotestsrc",
        "pattern=ball",
        &frames,
        "!",
        "video/x-raw,width=320,height=240,framerate=5/1",
    ];
    mjpeg_clip(&path, &source);
    path
}

/// Writes `path`: the shared dog.jpg scaled to `width`x`height`, repeated
/// for `frames` frames at 5 fps, as MJPEG in Matroska (a still camera whose
/// objects are known).
pub fn still_dog_clip(path: &Path, width: u32, height: u32, frames: u32) {
    let image = format!("location={}", shared_dir().join("media/dog.jpg").display());
    let size = format!("video/x-raw,width={width},height={height}");
    let frames = format!("num-buffers={frames}");
    let source = [
        "filesrc",
        &image,
        "!",
        "jpegdec",
        "!",
        "videoconvert",
        "!",
        "videoscale",
        "!",
        &size,
        "!",
        "imagefreeze",
        &frames,
        "!",
        "video/x-raw,framerate=5/1",
    ];
    mjpeg_clip(path, &source);
}

/// Writes `path`: the raw video of the gst-launch elements `source` as MJPEG
/// in Matroska.
pub fn mjpeg_clip(path: &Path, source: &[&str]) {
    let location = format!("location={}", path.display());
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(source)
        .args([
            "!",
            "jpegenc",
            "!",
            "matroskamux",
            "!",
            "filesink",
            &location,
        ])
        .status()
        .expect("gst-launch-1.0 runs");
    assert!(status.success(), "cannot make {}", path.display());
}

pub fn ort_env() -> (String, String) {
    let lib = std::env::var("ORT_DYLIB_PATH").unwrap_or_else(|_| {
        repo_root()
            .join(".ort/libonnxruntime.so")
            .display()
            .to_string()
    });
    ("ORT_DYLIB_PATH".into(), lib)
}

/// The service as a child process; stderr (the logs) kept line by line.
pub struct Service {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub addr: Option<SocketAddr>,
}

impl Service {
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Service {
        Service::start_with(&[], args, envs)
    }

    /// Started by `prlimit` with these `limits` (`--nofile=64`), which then
    /// runs the service in its own process.
    pub fn start_with(limits: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Service {
        let (k, v) = ort_env();
        let binary = env!("CARGO_BIN_EXE_cudainfer-run");
        let mut cmd = if limits.is_empty() {
            Command::new(binary)
        } else {
            let mut cmd = Command::new("prlimit");
            cmd.args(limits).arg(binary);
            cmd
        };
        cmd.args(args)
            .env(k, v)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the service starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let store = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                store.lock().unwrap().push(line);
            }
        });
        let mut service = Service {
            child,
            log,
            addr: None,
        };
        if args.contains(&"--http") {
            let line = service.wait_log("event=api_listening", Duration::from_secs(30));
            let addr = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("addr="))
                .expect("the address is logged");
            service.addr = Some(addr.parse().unwrap());
        }
        service
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the service ended ({status}) before '{needle}':\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no '{needle}' in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        token: Option<&str>,
    ) -> (u16, String) {
        http(
            self.addr.expect("started with --http"),
            method,
            path,
            body,
            token,
        )
    }

    pub fn cameras(&self) -> Vec<serde_json::Value> {
        let (status, body) = self.request("GET", "/cameras", None, None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.request("GET", "/metrics", None, None);
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// SIGTERM, then the exit status within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "the service did not end within {timeout:?} of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a new connection; (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the API accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or(b"");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A server that refuses a large body early may close before reading it all.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Prometheus text: `name{labels}` → value.
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut map = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (key, value) = line.rsplit_once(' ').expect("name value");
            map.insert(key.to_string(), value.parse().expect("a number"));
        }
        Metrics(map)
    }

    pub fn camera(&self, name: &str, camera: &str) -> f64 {
        let key = format!("{name}{{camera=\"{camera}\"}}");
        *self
            .0
            .get(&key)
            .unwrap_or_else(|| panic!("no {key} in the metrics"))
    }
}

/// The JSON lines written so far (a last partial line is left out).
pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

pub fn lines_of<'a>(lines: &'a [serde_json::Value], source: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["source"] == source).collect()
}

pub fn has_label(line: &serde_json::Value, label: &str) -> bool {
    line["objects"]
        .as_array()
        .is_some_and(|o| o.iter().any(|o| o["label"] == label))
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// A free TCP port on 127.0.0.1 (bound and released: the RTSP servers need
/// the same port again after a restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `bytes` as they are on a new connection and reads until the server
/// closes it or `wait` passes: the reply as text (empty when none came).
pub fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("the API accepts connections");
    stream.set_read_timeout(Some(wait)).unwrap();
    // A server that refuses early may close before reading it all.
    let _ = stream.write_all(bytes);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// The status code of an HTTP reply's first line.
pub fn status_of(reply: &str) -> Option<u16> {
    let mut words = reply.split_whitespace();
    words.next().filter(|w| w.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// Threads and resident memory (bytes) of process `pid`, from /proc.
pub fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:") * 1024)
}

/// The service's binary run to its end with `args`: (exit code, stderr),
/// killed after `timeout`.
pub fn run_to_end(args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let (k, v) = ort_env();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cudainfer-run"))
        .args(args)
        .env(k, v)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the service starts");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cudainfer-run {args:?} still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, reader.join().unwrap())
}

/// The ids the service gives a camera list without ids, in its order (as
/// `cudainfer_run::camera_id` assigns them: derived from each URI, `-2`…
/// for repeats).
pub fn ids_for(uris: &[&str]) -> Vec<String> {
    let keys: Vec<(Option<&str>, String)> = uris
        .iter()
        .map(|u| {
            let uri = cudainfer_run::camera_uri::CameraUri::parse(u).expect("a valid camera URI");
            (None, uri.identity().to_string())
        })
        .collect();
    cudainfer_run::camera_id::assign(&keys).expect("ids")
}
