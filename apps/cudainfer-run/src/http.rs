//! The REST API and /metrics: hyper's HTTP/1.1 server on a small tokio
//! runtime of its own. What a request may do is decided in
//! `cudainfer_run::request` (routes, token, loopback guard, body rules);
//! here are the limits that keep any client from holding the API:
//!
//! - a request's head must arrive within [`HEADER_TIMEOUT`] (slow clients,
//!   idle keep-alive connections) and fit [`MAX_HEAD_BYTES`];
//! - a body is read only where a route takes one, up to 16 KiB, within
//!   [`BODY_TIMEOUT`]; a declared length is never allocated; a refused
//!   request's body is read and dropped (1 MiB, 2 s at most) before the
//!   refusal, so that the client gets it rather than a reset;
//! - at most [`MAX_CONNECTIONS`] connections at once, and never more than a
//!   quarter of the process's file descriptors (see [`connection_slots`]),
//!   each a task, not a thread: a stalled client holds no worker, and
//!   clients cannot take the descriptors the cameras' pipelines need;
//! - a write that cannot go on for [`WRITE_TIMEOUT`] (a client that sends
//!   requests and never reads the answers) closes the connection, and each
//!   connection's kernel send buffer is [`SEND_BUFFER`];
//! - no call blocks a worker (a removal waits for its camera asynchronously)
//!   and none needs a thread of its own, so the API answers when the
//!   process can start no more threads; a panic in a request is a 500 for
//!   that request only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cudainfer_run::request::{self, AddCamera, Head, PageFile, Refusal, Route};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::camera::Camera;
use crate::log::{self, Level};
use crate::metrics;
use crate::service::{AddError, Service};
use crate::snapshot::{self, Ask};
use crate::stats::CameraState;

/// Longest time for a request's head to arrive, and for an idle
/// keep-alive connection to send its next one.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time for a POST's body to arrive once its head has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// The fewest connections served at once, however low the descriptor
/// limit.
const MIN_CONNECTIONS: usize = 4;

/// Connections served at once under a limit of `fds` file descriptors: a
/// quarter of them at most, the rest left to the cameras (each pipeline
/// holds about ten, and one that cannot get them cannot even wait for its
/// messages).
pub fn connection_slots(fds: u64) -> usize {
    usize::try_from(fds / 4)
        .unwrap_or(usize::MAX)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// Longest a write may wait for the client to read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Kernel send buffer per connection: a client that does not read holds
/// this much, not the megabytes the kernel would grow it to.
const SEND_BUFFER: usize = 64 * 1024;
/// The read buffer, which bounds a request's head (hyper's least is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Threads that run the connections (the work is small and non-blocking).
const WORKERS: usize = 2;
/// What of a refused request's body is read and thrown away so that the
/// refusal reaches the client (see [`drain`]).
const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a removal looks whether its camera has ended.
const STOP_POLL: Duration = Duration::from_millis(20);
/// How often a snapshot request looks whether its frame is encoded.
const SNAPSHOT_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot start the API's threads: {0}")]
    Runtime(std::io::Error),
}

/// The running API; dropping it (or [`Api::shutdown`]) stops it.
pub struct Api {
    runtime: Option<tokio::runtime::Runtime>,
    pub addr: SocketAddr,
}

impl Api {
    /// Stops accepting and ends the connections, waiting briefly for calls
    /// under way.
    pub fn shutdown(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

struct Context {
    token: Option<String>,
    open_metrics: bool,
    service: Arc<Service>,
    refusals: std::sync::Mutex<RefusalLog>,
}

/// Refused requests logged per second at most; the rest are counted and
/// the count goes with the next line logged, so that a client sending
/// refused requests as fast as it can does not flood the log.
const REFUSALS_LOGGED_PER_SECOND: u32 = 20;

/// A log of repeated events (refused requests, failed accepts) that keeps
/// to a number of lines a second.
struct RefusalLog {
    /// Lines logged per second at most.
    per_second: u32,
    second: Option<std::time::Instant>,
    logged: u32,
    suppressed: u64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::per_second(REFUSALS_LOGGED_PER_SECOND)
    }
}

impl RefusalLog {
    fn per_second(per_second: u32) -> Self {
        RefusalLog {
            per_second,
            second: None,
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether to log this one, and how many were left out before it.
    fn admit(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .second
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            self.second = Some(now);
            self.logged = 0;
        }
        if self.logged >= self.per_second {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Binds `addr` (port 0 picks a free one) and serves the API.
pub fn serve(
    addr: SocketAddr,
    token: Option<String>,
    open_metrics: bool,
    service: Arc<Service>,
    fd_limit: u64,
) -> Result<Api, HttpError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("http")
        .enable_io()
        .enable_time()
        .build()
        .map_err(HttpError::Runtime)?;
    let listener = runtime
        .block_on(TcpListener::bind(addr))
        .map_err(|e| HttpError::Bind(addr, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| HttpError::Bind(addr, e))?;
    let context = Arc::new(Context {
        token,
        open_metrics,
        service,
        refusals: std::sync::Mutex::default(),
    });
    runtime.spawn(accept(listener, context, connection_slots(fd_limit)));
    Ok(Api {
        runtime: Some(runtime),
        addr: bound,
    })
}

async fn accept(listener: TcpListener, context: Arc<Context>, connections: usize) {
    let slots = Arc::new(Semaphore::new(connections));
    // Failures are logged once a second at most, with how many were not.
    let mut failures = RefusalLog::per_second(1);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was taken: try again shortly, the API goes on.
                if let Some(left_out) = failures.admit() {
                    log::event(
                        Level::Warn,
                        "api_accept_failed",
                        &[("error", &e), ("not_logged_before", &left_out)],
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let context = context.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let serve = hyper::service::service_fn(move |req| handle(req, context.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(WriteDeadline::new(stream)), serve)
                .await;
        });
    }
}

/// A connection whose writes must make progress: one that has waited
/// [`WRITE_TIMEOUT`] for the client to read fails, and hyper drops the
/// connection. Hyper stops reading while it cannot write, so without this a
/// client that never reads would hold its connection (and its slot) for ever,
/// the head timeout never starting.
struct WriteDeadline {
    stream: tokio::net::TcpStream,
    /// Armed when a write first waits; cleared when one goes through.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl WriteDeadline {
    fn new(stream: tokio::net::TcpStream) -> Self {
        Self {
            stream,
            stalled: None,
        }
    }

    /// `result` of a write or flush, turned into an error once the writes
    /// have waited too long.
    fn progress<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        result: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        use std::task::Poll;
        match result {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
                if deadline.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client has not read the answer",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl tokio::io::AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let result = std::pin::Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progress(cx, result)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let result = std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.progress(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let result = std::pin::Pin::new(&mut self.stream).poll_flush(cx);
        self.progress(cx, result)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The operator's page may run its own script and style and show its own
/// images and snapshots fetched as blobs; nothing inline, no other origin,
/// in no frame.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The page's files, in the binary: no build step, nothing from elsewhere.
fn page_file(file: PageFile) -> Reply {
    let (content_type, body) = match file {
        PageFile::Index => ("text/html; charset=utf-8", include_str!("../ui/index.html")),
        PageFile::Script => (
            "text/javascript; charset=utf-8",
            include_str!("../ui/app.js"),
        ),
        PageFile::Style => ("text/css; charset=utf-8", include_str!("../ui/app.css")),
    };
    Reply {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

/// The camera's latest frame with its boxes as JPEG `width` pixels wide:
/// from the cache when fresh, else one frame asked of its snapshot branch
/// (at most one per [`snapshot::MIN_INTERVAL`]) and waited for, without
/// holding a worker.
async fn snapshot(service: &Service, id: &str, width: u32) -> Reply {
    let Some(camera) = service.get(id) else {
        return Reply::refused(&Refusal::new(404, "no such camera"));
    };
    let no_frame = |why: String| {
        let mut reply = Reply::refused(&Refusal::new(503, why));
        reply.headers.push(("Retry-After", "1".into()));
        reply
    };
    let state = camera.stats.state();
    if state != CameraState::Running {
        return no_frame(format!("no frame yet: the camera is {}", state.name()));
    }
    let deadline = std::time::Instant::now() + snapshot::WAIT;
    let jpeg = 'found: loop {
        match camera.snapshots.ask(width) {
            Ask::Cached(jpeg) => break 'found jpeg,
            Ask::Later(wait) => tokio::time::sleep(wait).await,
            Ask::Asked(seq) => {
                while std::time::Instant::now() < deadline {
                    tokio::time::sleep(SNAPSHOT_POLL).await;
                    match camera.snapshots.after(seq) {
                        // A frame of the width before, in flight when this
                        // one was asked: ask again.
                        Some(jpeg) if jpeg.width == width => break 'found jpeg,
                        Some(_) => break,
                        None => {}
                    }
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            return no_frame(format!(
                "no frame within {} s: the camera sends none now",
                snapshot::WAIT.as_secs()
            ));
        }
    };
    Reply {
        status: 200,
        content_type: "image/jpeg",
        body: jpeg.bytes.clone(),
        headers: vec![
            ("X-Frame-Width", jpeg.width.to_string()),
            ("X-Frame-Height", jpeg.height.to_string()),
        ],
    }
}

/// A response before it becomes hyper's.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, value: &impl serde::Serialize) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
            headers: Vec::new(),
        }
    }

    fn refused(r: &Refusal) -> Reply {
        let mut reply = Reply::json(r.status, &serde_json::json!({ "error": r.message }));
        if let Some(allow) = r.allow {
            reply.headers.push(("Allow", allow.into()));
        }
        if r.challenge {
            reply.headers.push(("WWW-Authenticate", "Bearer".into()));
        }
        reply
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        // The page's headers on every answer: the page may load only its
        // own files and snapshots (as blobs), in no frame, and an answer
        // of the API opened directly in a browser runs nothing either.
        let mut builder = Response::builder()
            .status(self.status)
            .header("Content-Type", self.content_type)
            .header("Cache-Control", "no-store")
            .header("X-Content-Type-Options", "nosniff")
            .header("Content-Security-Policy", CSP)
            .header("X-Frame-Options", "DENY")
            .header("Referrer-Policy", "no-referrer");
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::from(self.body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

async fn handle(
    req: Request<Incoming>,
    context: Arc<Context>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(100).collect();
    // A task of its own: a panic ends it alone, and becomes a 500.
    let reply = tokio::spawn(respond(req, context.clone()))
        .await
        .unwrap_or_else(|_| {
            Reply::refused(&Refusal::new(
                500,
                "internal error in this request (see the service's log); the service goes on",
            ))
        });
    if reply.status >= 400 {
        let admitted = context
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit();
        if let Some(suppressed) = admitted {
            log::event(
                Level::Warn,
                "api_refused",
                &[
                    ("method", &method),
                    ("path", &path),
                    ("status", &reply.status),
                    ("not_logged_before", &suppressed),
                ],
            );
        }
    }
    Ok(reply.into_response())
}

async fn respond(req: Request<Incoming>, context: Arc<Context>) -> Reply {
    let (parts, body) = req.into_parts();
    let decided: Result<Route, Refusal> = {
        let headers: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let head = Head {
            method: parts.method.as_str(),
            path: parts
                .uri
                .path_and_query()
                .map_or(parts.uri.path(), |p| p.as_str()),
            headers: &headers,
        };
        let access = request::Access {
            token: context.token.as_deref(),
            open_metrics: context.open_metrics,
        };
        request::decide(&head, access)
    };
    let route = match decided {
        Ok(route) => route,
        Err(r) => {
            drain(body).await;
            return Reply::refused(&r);
        }
    };
    let add = if route == Route::AddCamera {
        match read_body(body).await.and_then(|b| request::parse_add(&b)) {
            Ok(add) => Some(add),
            Err(r) => return Reply::refused(&r),
        }
    } else {
        None
    };
    if let Route::DeleteCamera(id) = route {
        if let Some(shard) = context.service.shard() {
            // The camera would come back at the instance's next start.
            let e = AddError::Sharded(shard, shard.count);
            return Reply::refused(&Refusal::new(409, e.to_string()));
        }
        return remove(&context.service, &id).await;
    }
    if let Route::Snapshot(id, width) = &route {
        return snapshot(&context.service, id, *width).await;
    }
    execute(&context.service, route, add)
}

/// Stops the camera `id` and answers once it is down (its last results
/// written), or after [`Camera::STOP_WAIT`] for a camera stuck in its
/// source, without holding a thread meanwhile.
async fn remove(service: &Service, id: &str) -> Reply {
    let Some(camera) = service.remove(id) else {
        return Reply::refused(&Refusal::new(404, "no such camera"));
    };
    let waited = std::time::Instant::now();
    while !camera.ended() {
        if waited.elapsed() > Camera::STOP_WAIT {
            camera.report_stuck();
            break;
        }
        tokio::time::sleep(STOP_POLL).await;
    }
    Reply {
        status: 204,
        content_type: "application/json",
        body: Vec::new(),
        headers: Vec::new(),
    }
}

/// The body of a POST, up to [`request::MAX_BODY`] within [`BODY_TIMEOUT`];
/// a longer one is drained (see [`drain`]) and refused with a 413.
async fn read_body(mut body: Incoming) -> Result<Bytes, Refusal> {
    let mut collected = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Refusal::new(400, "cannot read the request body"))?;
            if let Some(data) = frame.data_ref() {
                if collected.len() + data.len() > request::MAX_BODY {
                    return Err(Refusal::new(413, "request body over 16 KiB"));
                }
                collected.extend_from_slice(data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(Refusal::new(
            408,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(refusal)) => {
            if refusal.status == 413 {
                drain(body).await;
            }
            Err(refusal)
        }
        Ok(Ok(())) => Ok(Bytes::from(collected)),
    }
}

/// Reads and discards what is left of a refused request's body, up to
/// [`DRAIN_BYTES`] within [`DRAIN_TIMEOUT`], before the refusal is sent. A
/// server that closes with unread bytes makes its kernel reset the
/// connection, and the client's kernel may then drop the refusal unread:
/// the client sees "connection reset" instead of the 413 or 401.
async fn drain(mut body: Incoming) {
    // A body declared longer than what is drained: closing is as good now.
    if body.is_end_stream() || body.size_hint().lower() > DRAIN_BYTES as u64 {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut left = DRAIN_BYTES;
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n > left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

/// Carries a decided request out on the service (quick: nothing waits).
fn execute(service: &Service, route: Route, add: Option<AddCamera>) -> Reply {
    let no_camera = || Reply::refused(&Refusal::new(404, "no such camera"));
    match route {
        Route::Metrics => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: metrics::render(service).into_bytes(),
            headers: Vec::new(),
        },
        Route::ListCameras => {
            let list: Vec<_> = service
                .list()
                .iter()
                .map(|c| metrics::view(c, service.settings.gpu))
                .collect();
            Reply::json(200, &list)
        }
        Route::Health => Reply::json(200, &serde_json::json!({ "status": "ok" })),
        Route::Ready => match service.not_ready() {
            None => Reply::json(200, &serde_json::json!({ "ready": true })),
            Some(reason) => Reply::json(
                503,
                &serde_json::json!({ "ready": false, "reason": reason }),
            ),
        },
        Route::GetCamera(id) => match service.get(&id) {
            Some(c) => Reply::json(200, &metrics::view(&c, service.settings.gpu)),
            None => no_camera(),
        },
        Route::DeleteCamera(_) | Route::Snapshot(..) => {
            Reply::refused(&Refusal::new(500, "not carried out here"))
        }
        Route::Page(file) => page_file(file),
        Route::AddCamera => {
            let Some(AddCamera { uri, loop_file }) = add else {
                return Reply::refused(&Refusal::new(400, "no camera in the body"));
            };
            match service.add_requested(uri, loop_file) {
                Ok(camera) => {
                    let mut reply = Reply::json(201, &metrics::view(&camera, service.settings.gpu));
                    reply
                        .headers
                        .push(("Location", format!("/cameras/{}", camera.id)));
                    reply
                }
                Err(AddError::Uri(e)) => Reply::refused(&request::uri_refusal(&e)),
                Err(e @ (AddError::Full(_) | AddError::Sharded(..))) => {
                    Reply::refused(&Refusal::new(409, e.to_string()))
                }
                Err(e @ (AddError::Resources(_) | AddError::NoHeadroom(_))) => {
                    Reply::refused(&Refusal::new(503, e.to_string()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_a_bounded_rate() {
        let mut log = RefusalLog::default();
        let admitted = (0..100).filter(|_| log.admit().is_some()).count();
        assert_eq!(admitted, REFUSALS_LOGGED_PER_SECOND as usize);
        // A second later the next line carries the count left out.
        log.second = Some(std::time::Instant::now() - Duration::from_secs(1));
        assert_eq!(log.admit(), Some(100 - REFUSALS_LOGGED_PER_SECOND as u64));
        assert_eq!(log.admit(), Some(0));
    }

    #[test]
    fn connections_leave_three_quarters_of_the_descriptors() {
        assert_eq!(connection_slots(64), 16);
        assert_eq!(connection_slots(1024), 256);
        assert_eq!(connection_slots(1 << 20), MAX_CONNECTIONS);
        assert_eq!(connection_slots(8), MIN_CONNECTIONS);
        assert_eq!(connection_slots(u64::MAX), MAX_CONNECTIONS);
    }
}
