//! http:// cameras: a clip served by a small HTTP server in the test; the end
//! of the stream is a failure that is retried, a 404 a failure with its reason.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Serves `body` at `/small.mkv` (byte ranges too, since souphttpsrc may ask
/// for one) and 404 for anything else, on 127.0.0.1; counts the GETs of
/// the clip.
struct HttpServer {
    port: u16,
    clip_gets: Arc<AtomicUsize>,
}

impl HttpServer {
    fn start(body: Vec<u8>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let clip_gets = Arc::new(AtomicUsize::new(0));
        let (body, gets) = (Arc::new(body), clip_gets.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (body, gets) = (body.clone(), gets.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &body, &gets);
                });
            }
        });
        HttpServer { port, clip_gets }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve(mut stream: TcpStream, body: &[u8], gets: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut start = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(range) = lower.strip_prefix("range: bytes=") {
            start = range
                .trim()
                .split('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    if path != "/small.mkv" {
        return stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    gets.fetch_add(1, Ordering::Relaxed);
    let start = start.min(body.len());
    let head = if start == 0 {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: video/x-matroska\r\nContent-Length: {}\r\n\
             Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Type: video/x-matroska\r\n\
             Content-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n\
             Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            body.len() - start,
            body.len() - 1,
            body.len()
        )
    };
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body[start..])
}

/// A 2 s clip over HTTP: the camera publishes its frames, the end of the
/// stream fails it ("the stream ended") and it is fetched and played again
/// from the start, counted in `cudainfer_camera_reconnects_total`; a URL
/// that answers 404 fails its camera alone, with the status and URL as the
/// reason in the log and in `/cameras`.
#[test]
fn http_camera_is_retried_and_a_404_is_reported() {
    let dir = temp_dir("http");
    let clip = small_clip(&dir, 10);
    let server = HttpServer::start(std::fs::read(&clip).unwrap());
    let json = dir.join("results.jsonl");
    let (model, json_s) = (model(), json.display().to_string());
    let (good, missing) = (server.url("/small.mkv"), server.url("/missing.mkv"));
    let mut service = Service::start(
        &[
            "--model", &model, "--json", &json_s, "--http", "0", &good, &missing,
        ],
        &[],
    );
    let ids = ids_for(&[good.as_str(), missing.as_str()]);
    let (cam1_id, cam2_id) = (ids[0].as_str(), ids[1].as_str());
    let waited = wait_until(
        "the good camera retried twice",
        Duration::from_secs(45),
        || {
            service
                .metrics()
                .camera("cudainfer_camera_reconnects_total", cam1_id)
                >= 2.0
        },
    );
    let lines = read_lines(&json);
    let cam1 = lines_of(&lines, cam1_id);
    // Every play starts again from the clip's first frame.
    let plays = cam1.iter().filter(|l| l["pts_ns"] == 0).count();
    let gets = server.clip_gets.load(Ordering::Relaxed);
    println!(
        "2 reconnects after {:.1} s: {} results of {cam1_id}, {plays} plays from the start, {gets} GETs",
        waited.as_secs_f64(),
        cam1.len()
    );
    assert!(cam1.len() >= 20, "two whole plays: {} results", cam1.len());
    assert!(plays >= 2, "played from the start {plays} times");
    assert!(gets >= 2, "the clip was fetched {gets} times");
    assert!(lines_of(&lines, cam2_id).is_empty());

    let cameras = service.cameras();
    assert_eq!(cameras[0]["uri"], good.as_str());
    assert_eq!(cameras[0]["last_error"], "the stream ended");
    let error = cameras[1]["last_error"].as_str().unwrap_or_default();
    println!("{cam2_id}: {error}");
    assert!(
        error.contains("404") && error.contains(&missing),
        "{cam2_id}'s error: {error}"
    );
    assert_eq!(cameras[1]["frames_in"], 0);
    assert!(
        service
            .metrics()
            .camera("cudainfer_camera_reconnects_total", cam2_id)
            >= 1.0
    );
    let log = service.wait_log(
        &format!("event=camera_failed camera={cam2_id}"),
        Duration::from_secs(1),
    );
    assert!(log.contains("(404)"), "{log}");
    let status = service.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    std::fs::remove_dir_all(&dir).unwrap();
}
