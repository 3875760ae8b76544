//! What an API request asks for, decided from its head and body alone: the
//! token, the loopback guard, the route, the body's type, size and JSON. No
//! I/O and no service here, so that the server (`http` in the binary)
//! only carries decisions out and the fuzzer drives this with any request.
//!
//! Routes: `GET /cameras`, `POST /cameras` (`{"uri": "...", "loop": true}`),
//! `GET|DELETE /cameras/{id}`, `GET /cameras/{id}/snapshot.jpg?width=W`,
//! `GET /metrics`, the probes `GET /healthz` and `GET /readyz`, and the
//! operator's page `GET /` with its files `GET /ui/app.js` and
//! `GET /ui/app.css`. With a token every request but the probes, the page's
//! files (and /metrics where the operator opened it) needs `Authorization:
//! Bearer <token>`; without one (loopback only) a request must name a
//! loopback host and come from no other web origin.
//!
//! The page and its files are served to anyone who reaches the port: they
//! are the same bytes in every binary, hold no data and no secret, and the
//! page must load before its login form can ask for the token. Every call
//! that returns data (the snapshots included) needs the token.

use serde::Deserialize;

use crate::camera_id;
use crate::camera_uri::{CameraUri, UriError};

/// Largest request body (a camera's JSON is a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;

/// A request's head: method, path (with its query, which only the
/// snapshot's route reads) and headers.
pub struct Head<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl<'a> Head<'a> {
    fn values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// What a request may do once accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The process serves (liveness).
    Health,
    /// The service can do its work (readiness).
    Ready,
    Metrics,
    ListCameras,
    /// The body still has to be read and given to [`parse_add`].
    AddCamera,
    GetCamera(String),
    DeleteCamera(String),
    /// The camera's latest annotated frame as JPEG, this many pixels wide.
    Snapshot(String, u32),
    /// A file of the operator's page.
    Page(PageFile),
}

/// The operator's page and its files (embedded in the binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFile {
    Index,
    Script,
    Style,
}

impl PageFile {
    /// The path that names it.
    pub fn path(self) -> &'static str {
        match self {
            PageFile::Index => "/",
            PageFile::Script => "/ui/app.js",
            PageFile::Style => "/ui/app.css",
        }
    }
}

/// Widths a snapshot may be asked in: wider than the largest frame is
/// pointless work, narrower than this shows nothing.
pub const SNAPSHOT_WIDTHS: std::ops::RangeInclusive<u32> = 160..=1920;
/// A snapshot's width when the request names none.
pub const SNAPSHOT_DEFAULT_WIDTH: u32 = 640;

/// The width a snapshot's query asks for (`width=W`), clamped into
/// [`SNAPSHOT_WIDTHS`] and made even (4:2:0 chroma halves it); other
/// parameters are ignored. A width that is not a number is refused.
pub fn snapshot_width(query: Option<&str>) -> Result<u32, Refusal> {
    let given = query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.strip_prefix("width="))
        .next_back();
    let Some(text) = given else {
        return Ok(SNAPSHOT_DEFAULT_WIDTH);
    };
    let n = (!text.is_empty() && text.len() <= 6 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| Refusal::new(400, "width must be a number of pixels, e.g. width=640"))?;
    Ok(n.clamp(*SNAPSHOT_WIDTHS.start(), *SNAPSHOT_WIDTHS.end()) & !1)
}

/// What the API lets through without the token.
#[derive(Debug, Clone, Copy, Default)]
pub struct Access<'a> {
    /// The API's token; none: loopback only, guarded.
    pub token: Option<&'a str>,
    /// `GET /metrics` without the token (a scraper that cannot send one).
    pub open_metrics: bool,
}

/// A refused request: the status, a message that says why and what to do,
/// and the headers that go with the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    /// The methods of the path, for a 405.
    pub allow: Option<&'static str>,
    /// `WWW-Authenticate: Bearer`, for a 401.
    pub challenge: bool,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            allow: None,
            challenge: false,
        }
    }
}

/// A camera to add, from a POST's body.
#[derive(Debug)]
pub struct AddCamera {
    pub uri: CameraUri,
    pub loop_file: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    uri: String,
    #[serde(rename = "loop")]
    loop_file: Option<bool>,
}

/// Equal length and bytes, compared without an early exit.
pub fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// `host[:port]` names the loopback interface: `localhost`, `127.x.y.z` or
/// `[::1]`.
fn is_loopback_host(authority: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(authority) else {
        return false;
    };
    let host = if let Some(rest) = text.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || port.starts_with(':') => inside,
            _ => return false,
        }
    } else {
        text.split(':').next().unwrap_or("")
    };
    let port_ok = match text
        .rsplit_once(']')
        .map_or(text, |(_, p)| p)
        .split_once(':')
    {
        Some((_, port)) => port.bytes().all(|b| b.is_ascii_digit()) && port.len() <= 5,
        None => true,
    };
    port_ok
        && (host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()))
}

/// Without a token the API trusts loopback, which a web page in the
/// operator's browser reaches too: by a form post (cross-origin, with an
/// `Origin`) or by DNS rebinding (its own name, resolved to 127.0.0.1, in
/// `Host`). Both are refused; tools (curl, scripts) send neither.
fn loopback_guard(head: &Head) -> Result<(), Refusal> {
    let refuse = |what: &str| {
        Refusal::new(
            403,
            format!(
                "{what}: the API has no token, so it answers only requests addressed to a loopback \
                 name (127.0.0.1, localhost, [::1]) and not sent by a web page of another origin. \
                 Use such an address, or give the service a token"
            ),
        )
    };
    let hosts: Vec<&[u8]> = head.values("host").collect();
    if hosts.len() > 1 {
        return Err(Refusal::new(400, "more than one Host header"));
    }
    if hosts.iter().any(|h| !is_loopback_host(h)) {
        return Err(refuse("the Host header is not a loopback name"));
    }
    for origin in head.values("origin") {
        let local = origin
            .strip_prefix(b"http://")
            .is_some_and(is_loopback_host);
        if !local {
            return Err(refuse(
                "the request comes from a web page of another origin",
            ));
        }
    }
    Ok(())
}

fn authorised(head: &Head, token: &str) -> bool {
    head.values("authorization").any(|v| {
        // The scheme's name is case-insensitive (RFC 7235).
        v.get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            && token_matches(v[7..].trim_ascii(), token.as_bytes())
    })
}

/// A camera id in a path: as [`camera_id::is_valid`] allows, and only
/// compared as it is (no case folding, no decoding), so that one camera has
/// one name.
pub fn parse_id(id: &str) -> Option<String> {
    camera_id::is_valid(id).then(|| id.to_string())
}

const NO_CAMERA: &str = "no such camera: use an id as GET /cameras lists it";

/// The probes answer without the token (they tell nothing else), so that an
/// orchestrator's kubelet or load balancer needs no secret.
fn probe(head: &Head) -> Option<Result<Route, Refusal>> {
    let path = head.path.split(['?', '#']).next().unwrap_or("");
    let route = match path {
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        _ => return None,
    };
    Some(if head.method == "GET" || head.method == "HEAD" {
        Ok(route)
    } else {
        Err(Refusal {
            allow: Some("GET, HEAD"),
            ..Refusal::new(405, "method not allowed on this path: it takes GET, HEAD")
        })
    })
}

/// The page's files answer without the token (see the module's text).
fn page(head: &Head) -> Option<Result<Route, Refusal>> {
    let path = head.path.split(['?', '#']).next().unwrap_or("");
    let file = [PageFile::Index, PageFile::Script, PageFile::Style]
        .into_iter()
        .find(|f| f.path() == path)?;
    Some(if head.method == "GET" {
        Ok(Route::Page(file))
    } else {
        Err(Refusal {
            allow: Some("GET"),
            ..Refusal::new(405, "method not allowed on this path: it takes GET")
        })
    })
}

/// Decides what a request asks for from its head; `token` is the API's.
/// Authentication comes first, so that nothing (not even which paths exist)
/// is told to a client without it.
pub fn decide(head: &Head, access: Access) -> Result<Route, Refusal> {
    if let Some(decided) = probe(head).or_else(|| page(head)) {
        return decided;
    }
    let open = access.open_metrics
        && head.method == "GET"
        && head.path.split(['?', '#']).next() == Some("/metrics");
    match access.token.filter(|_| !open) {
        Some(token) if !authorised(head, token) => {
            return Err(Refusal {
                challenge: true,
                ..Refusal::new(
                    401,
                    "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                )
            })
        }
        Some(_) => {}
        None if access.token.is_none() => loopback_guard(head)?,
        None => {}
    }
    let path = head.path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let not_allowed = |allow: &'static str| Refusal {
        allow: Some(allow),
        ..Refusal::new(
            405,
            format!("method not allowed on this path: it takes {allow}"),
        )
    };
    let camera = |id: &str| parse_id(id).ok_or_else(|| Refusal::new(404, NO_CAMERA));
    let route =
        match (head.method, path.starts_with('/'), segments.as_slice()) {
            ("GET", true, ["metrics"]) => Route::Metrics,
            ("GET", true, ["cameras"]) => Route::ListCameras,
            ("POST", true, ["cameras"]) => Route::AddCamera,
            ("GET", true, ["cameras", id]) => Route::GetCamera(camera(id)?),
            ("DELETE", true, ["cameras", id]) => Route::DeleteCamera(camera(id)?),
            ("GET", true, ["cameras", id, "snapshot.jpg"]) => {
                let id = camera(id)?;
                let query = head.path.split('#').next().and_then(|p| p.split_once('?'));
                Route::Snapshot(id, snapshot_width(query.map(|(_, q)| q))?)
            }
            (_, true, ["metrics"]) => return Err(not_allowed("GET")),
            (_, true, ["cameras"]) => return Err(not_allowed("GET, POST")),
            (_, true, ["cameras", _]) => return Err(not_allowed("GET, DELETE")),
            (_, true, ["cameras", _, "snapshot.jpg"]) => return Err(not_allowed("GET")),
            _ => return Err(Refusal::new(
                404,
                "no such path: use /cameras, /cameras/{id}, /cameras/{id}/snapshot.jpg, /metrics, \
                 /healthz, /readyz or / (the operator's page)",
            )),
        };
    if route == Route::AddCamera {
        check_body_head(head)?;
    }
    Ok(route)
}

/// A POST's body must be JSON (which also keeps a web page from posting
/// without a CORS preflight) and at most [`MAX_BODY`].
fn check_body_head(head: &Head) -> Result<(), Refusal> {
    let json = head.values("content-type").next().is_some_and(|v| {
        let media = v.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
        media.eq_ignore_ascii_case(b"application/json")
    });
    if !json {
        return Err(Refusal::new(
            415,
            "send the camera as JSON with 'Content-Type: application/json'",
        ));
    }
    let too_long = head.values("content-length").any(|v| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_none_or(|n| n > MAX_BODY as u64)
    });
    if too_long {
        return Err(Refusal::new(413, "request body over 16 KiB"));
    }
    Ok(())
}

/// The camera a POST's body describes. The URI's refusal names no secret.
pub fn parse_add(body: &[u8]) -> Result<AddCamera, Refusal> {
    if body.len() > MAX_BODY {
        return Err(Refusal::new(413, "request body over 16 KiB"));
    }
    let add: AddBody = serde_json::from_slice(body).map_err(|e| {
        // serde's message quotes the offending value, which may be a URI
        // with its password: only the kind of error and where it is.
        let kind = match e.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Eof => "incomplete",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => {
                "not the expected fields (uri, a string; loop, true or false; no others)"
            }
        };
        Refusal::new(
            400,
            format!(
                "body must be JSON {{\"uri\": \"...\", \"loop\": true|false}}: {kind} at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let uri = CameraUri::parse(&add.uri).map_err(|e| Refusal::new(400, e.to_string()))?;
    Ok(AddCamera {
        uri,
        loop_file: add.loop_file,
    })
}

/// The status for a camera that the service refused to add.
pub fn uri_refusal(e: &UriError) -> Refusal {
    let status = match e {
        UriError::NotAllowed(_) => 403,
        _ => 400,
    };
    Refusal::new(status, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(method: &'a str, path: &'a str, headers: &'a [(&'a str, &'a [u8])]) -> Head<'a> {
        Head {
            method,
            path,
            headers,
        }
    }

    const JSON: (&str, &[u8]) = ("Content-Type", b"application/json");
    const LOCAL: (&str, &[u8]) = ("Host", b"127.0.0.1:8080");
    const NONE: Access = Access {
        token: None,
        open_metrics: false,
    };
    const TOKEN: Access = Access {
        token: Some("0123456789abcdef"),
        open_metrics: false,
    };

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
    }

    #[test]
    fn ids_are_taken_as_written() {
        assert_eq!(parse_id("cam-1"), Some("cam-1".into()));
        assert_eq!(parse_id("gate-north"), Some("gate-north".into()));
        for bad in ["Cam-1", "cam%2d1", "cam- 1", "", "..", "-x", "a.b"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
        let h = [LOCAL];
        assert_eq!(
            decide(&head("DELETE", "/cameras/CAM-1", &h), NONE)
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn probes_need_no_token_and_metrics_may_be_opened() {
        let bare = [("Host", &b"10.1.2.3:8080"[..])];
        for access in [NONE, TOKEN] {
            assert_eq!(
                decide(&head("GET", "/healthz", &bare), access),
                Ok(Route::Health)
            );
            assert_eq!(
                decide(&head("HEAD", "/readyz", &bare), access),
                Ok(Route::Ready)
            );
            let r = decide(&head("POST", "/readyz", &bare), access).unwrap_err();
            assert_eq!((r.status, r.allow), (405, Some("GET, HEAD")));
        }
        assert_eq!(
            decide(&head("GET", "/metrics", &bare), TOKEN)
                .unwrap_err()
                .status,
            401
        );
        let open = Access {
            open_metrics: true,
            ..TOKEN
        };
        assert_eq!(
            decide(&head("GET", "/metrics", &bare), open),
            Ok(Route::Metrics)
        );
        // Only /metrics is opened.
        for (method, path) in [
            ("GET", "/cameras"),
            ("POST", "/metrics"),
            ("GET", "/metrics/"),
        ] {
            let r = decide(&head(method, path, &bare), open).unwrap_err();
            assert_eq!(r.status, 401, "{method} {path}");
        }
    }

    #[test]
    fn routes_and_methods() {
        let h = [LOCAL, JSON];
        let d = |m, p| decide(&head(m, p, &h), NONE);
        assert_eq!(d("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(d("GET", "/cameras/?x=1"), Ok(Route::ListCameras));
        assert_eq!(d("POST", "/cameras"), Ok(Route::AddCamera));
        assert_eq!(
            d("GET", "/cameras/cam-3"),
            Ok(Route::GetCamera("cam-3".into()))
        );
        assert_eq!(
            d("DELETE", "/cameras/door_2"),
            Ok(Route::DeleteCamera("door_2".into()))
        );
        let r = d("PUT", "/cameras").unwrap_err();
        assert_eq!((r.status, r.allow), (405, Some("GET, POST")));
        assert_eq!(d("POST", "/metrics").unwrap_err().allow, Some("GET"));
        assert_eq!(
            d("GET", "/cameras/cam-3/snapshot.jpg?width=320"),
            Ok(Route::Snapshot("cam-3".into(), 320))
        );
        let r = d("DELETE", "/cameras/cam-3/snapshot.jpg").unwrap_err();
        assert_eq!((r.status, r.allow), (405, Some("GET")));
        assert_eq!(
            d("GET", "/cameras/CAM/snapshot.jpg").unwrap_err().status,
            404
        );
        assert_eq!(
            d("GET", "/cameras/cam-3/other.jpg").unwrap_err().status,
            404
        );
        assert_eq!(d("GET", "/etc/passwd").unwrap_err().status, 404);
        assert_eq!(d("GET", "*").unwrap_err().status, 404);
    }

    #[test]
    fn snapshot_widths_are_bounded() {
        let w = |q: Option<&str>| snapshot_width(q).map_err(|r| r.status);
        assert_eq!(w(None), Ok(SNAPSHOT_DEFAULT_WIDTH));
        assert_eq!(w(Some("x=1")), Ok(SNAPSHOT_DEFAULT_WIDTH));
        assert_eq!(w(Some("width=320")), Ok(320));
        assert_eq!(w(Some("a=b&width=321")), Ok(320));
        assert_eq!(w(Some("width=1")), Ok(160));
        assert_eq!(w(Some("width=999999")), Ok(1920));
        for bad in [
            "width=",
            "width=-5",
            "width=1e3",
            "width=9999999",
            "width=%33",
        ] {
            assert_eq!(w(Some(bad)), Err(400), "{bad}");
        }
        let h = [LOCAL];
        let r = decide(&head("GET", "/cameras/c/snapshot.jpg?width=abc", &h), NONE);
        assert_eq!(r.unwrap_err().status, 400);
    }

    #[test]
    fn the_page_needs_no_token_but_its_data_does() {
        let bare = [("Host", &b"10.1.2.3:8080"[..])];
        for access in [NONE, TOKEN] {
            for (path, file) in [
                ("/", PageFile::Index),
                ("/ui/app.js", PageFile::Script),
                ("/ui/app.css?v=1", PageFile::Style),
            ] {
                assert_eq!(
                    decide(&head("GET", path, &bare), access),
                    Ok(Route::Page(file))
                );
                let r = decide(&head("POST", path, &bare), access).unwrap_err();
                assert_eq!((r.status, r.allow), (405, Some("GET")));
            }
        }
        for path in ["/ui/", "/ui/other.js", "/index.html", "//"] {
            let r = decide(&head("GET", path, &bare), TOKEN).unwrap_err();
            assert_eq!(r.status, 401, "{path}");
        }
        let r = decide(&head("GET", "/cameras/c/snapshot.jpg", &bare), TOKEN).unwrap_err();
        assert_eq!(r.status, 401);
        let r = decide(&head("GET", "/cameras/c/snapshot.jpg", &bare), NONE).unwrap_err();
        assert_eq!(r.status, 403);
    }

    #[test]
    fn post_needs_json_of_bounded_size() {
        for ct in [
            &b"text/plain"[..],
            b"application/x-www-form-urlencoded",
            b"",
        ] {
            let h = [LOCAL, ("Content-Type", ct)];
            let r = decide(&head("POST", "/cameras", &h), NONE).unwrap_err();
            assert_eq!(r.status, 415, "{ct:?}");
        }
        let h = [
            LOCAL,
            ("content-type", &b"Application/JSON; charset=utf-8"[..]),
        ];
        assert!(decide(&head("POST", "/cameras", &h), NONE).is_ok());
        let h = [
            LOCAL,
            JSON,
            ("Content-Length", &b"18446744073709551615"[..]),
        ];
        assert_eq!(
            decide(&head("POST", "/cameras", &h), NONE)
                .unwrap_err()
                .status,
            413
        );
        let h = [
            LOCAL,
            JSON,
            ("Content-Length", &b"99999999999999999999999"[..]),
        ];
        assert_eq!(
            decide(&head("POST", "/cameras", &h), NONE)
                .unwrap_err()
                .status,
            413
        );
    }

    #[test]
    fn web_pages_cannot_use_the_tokenless_api() {
        let post = |headers: &[(&str, &[u8])]| {
            let mut h = vec![JSON];
            h.extend_from_slice(headers);
            decide(&head("POST", "/cameras", &h), NONE).map_err(|r| r.status)
        };
        assert_eq!(post(&[("Host", b"rebind.evil")]), Err(403));
        assert_eq!(post(&[("Host", b"rebind.evil:8080")]), Err(403));
        assert_eq!(post(&[("Host", b"127.0.0.1.evil")]), Err(403));
        assert_eq!(post(&[LOCAL, ("Origin", b"http://evil")]), Err(403));
        assert_eq!(post(&[LOCAL, ("Origin", b"null")]), Err(403));
        assert_eq!(post(&[LOCAL, LOCAL]), Err(400));
        assert_eq!(post(&[LOCAL]), Ok(Route::AddCamera));
        assert_eq!(post(&[("Host", b"localhost")]), Ok(Route::AddCamera));
        assert_eq!(post(&[("Host", b"[::1]:80")]), Ok(Route::AddCamera));
        assert_eq!(
            post(&[LOCAL, ("Origin", b"http://127.0.0.1:8080")]),
            Ok(Route::AddCamera)
        );
        // HTTP/1.0 tools may send no Host; browsers always do.
        assert_eq!(post(&[]), Ok(Route::AddCamera));
        // With a token the token decides.
        let h = [
            ("Host", &b"rebind.evil"[..]),
            ("Authorization", b"Bearer 0123456789abcdef"),
        ];
        assert_eq!(
            decide(&head("GET", "/metrics", &h), TOKEN),
            Ok(Route::Metrics)
        );
        let r = decide(&head("GET", "/nope", &h[..1]), TOKEN).unwrap_err();
        assert_eq!((r.status, r.challenge), (401, true));
    }

    #[test]
    fn bodies_are_checked_without_echoing_them() {
        let r = parse_add(br#"{"uri": 5}"#).unwrap_err();
        assert_eq!(r.status, 400);
        let r = parse_add(br#"{"uri": "rtsp://admin:secretpass@h/x", "extra": 1}"#).unwrap_err();
        assert!(!r.message.contains("secretpass"), "{}", r.message);
        let r = parse_add(br#"{"uri": "rtsp://admin:secret/pass@h:1/x"}"#).unwrap_err();
        assert!(!r.message.contains("secret"), "{}", r.message);
        let a = parse_add(br#"{"uri": "rtsp://h/x", "loop": false}"#).unwrap();
        assert_eq!((a.uri.bare(), a.loop_file), ("rtsp://h/x", Some(false)));
        assert_eq!(parse_add(&[b' '; MAX_BODY + 1]).unwrap_err().status, 413);
    }
}
