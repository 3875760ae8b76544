//! API requests as cudainfer-run's server hands them over: the head (method,
//! path, headers) to `request::decide`, with and without an API token, and
//! the body to `request::parse_add` (which the server calls for POST
//! /cameras only; its rules do not depend on the head, so every body is
//! tried). Nothing may panic. A refusal has a status the server sends, the
//! headers that go with it, and shows neither the token nor the body's
//! credentials. With a token nothing gets past without its bearer (but the
//! probes, the operator's page and its files, and GET /metrics where
//! opened); without one only loopback names and no foreign origin do (but
//! the probes and the page's files); a route is the method and path that
//! name it; a snapshot's width is within its bounds.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

use cudainfer_run::camera_id;
use cudainfer_run::camera_uri::CameraUri;
use cudainfer_run::request::{
    decide, parse_add, parse_id, Access, Head, PageFile, Refusal, Route, MAX_BODY, SNAPSHOT_WIDTHS,
};
use gst_cudainfer_fuzz::{check_accepted_uri, check_refused_uri, CappedAlloc};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// The API's token when it has one (20 characters).
const TOKEN: &str = "Tk7-fuzz-token-x9Q2z";

/// What the server may answer a refused request with (408: a body too slow).
const STATUSES: [u16; 8] = [400, 401, 403, 404, 405, 408, 413, 415];

/// The input (`make_seeds.py` writes it): a byte whose lowest bit gives the
/// API a token and whose next bit opens /metrics, then the request as text: `METHOD PATH`, header lines
/// `Name: value` (a line without ':' is a name with an empty value), an
/// empty line and the body. Lines end at '\n'.
struct Request {
    token: Option<&'static str>,
    open_metrics: bool,
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    fn read(data: &[u8]) -> Self {
        let (flags, text) = data.split_first().unwrap_or((&0, &[]));
        let (head, body) = match text.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => (text, &[][..]),
        };
        let mut lines = head.split(|&b| b == b'\n');
        let first = String::from_utf8_lossy(lines.next().unwrap_or_default());
        let (method, path) = first.split_once(' ').unwrap_or((&first, ""));
        let headers = lines
            .map(|line| match line.iter().position(|&b| b == b':') {
                Some(i) => (
                    String::from_utf8_lossy(&line[..i]).into_owned(),
                    line[i + 1..].trim_ascii_start().to_vec(),
                ),
                None => (String::from_utf8_lossy(line).into_owned(), Vec::new()),
            })
            .collect();
        Self {
            token: (flags & 1 != 0).then_some(TOKEN),
            open_metrics: flags & 2 != 0,
            method: method.to_owned(),
            path: path.to_owned(),
            headers,
            body: body.to_vec(),
        }
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The path the routes are matched on: no query or fragment, no
    /// trailing '/'.
    fn route_path(&self) -> &str {
        let path = self.path.split(['?', '#']).next().unwrap_or_default();
        path.trim_end_matches('/')
    }

    /// The path without its query or fragment, as the probes match it.
    fn bare_path(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or_default()
    }

    /// A probe's path, which needs neither token nor loopback name.
    fn is_probe(&self) -> bool {
        ["/healthz", "/readyz"].contains(&self.bare_path())
    }

    /// A file of the operator's page, which needs neither token nor
    /// loopback name.
    fn is_page(&self) -> bool {
        ["/", "/ui/app.js", "/ui/app.css"].contains(&self.bare_path())
    }

    /// A snapshot's path whose query names a width.
    fn is_snapshot_with_width(&self) -> bool {
        let path = self.route_path();
        self.method == "GET"
            && path.starts_with("/cameras/")
            && path.ends_with("/snapshot.jpg")
            && self.path.contains("width=")
    }

    /// GET /metrics on an API that opened it.
    fn is_open_metrics(&self) -> bool {
        self.open_metrics && self.method == "GET" && self.bare_path() == "/metrics"
    }

    /// Some `Authorization` is `Bearer ` (the scheme's name in any case)
    /// and the token, up to ASCII spaces around the token.
    fn has_bearer(&self, token: &str) -> bool {
        self.values("authorization").any(|v| {
            v.split_at_checked(7).is_some_and(|(scheme, t)| {
                scheme.eq_ignore_ascii_case(b"Bearer ") && t.trim_ascii() == token.as_bytes()
            })
        })
    }

    /// The first `Content-Type` is JSON, and every `Content-Length` a
    /// number up to `MAX_BODY`.
    fn json_of_bounded_size(&self) -> (bool, bool) {
        let json = self.values("content-type").next().is_some_and(|v| {
            let media = v.split(|&b| b == b';').next().unwrap_or_default();
            media.trim_ascii().eq_ignore_ascii_case(b"application/json")
        });
        let bounded = self.values("content-length").all(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n <= MAX_BODY as u64)
        });
        (json, bounded)
    }
}

/// `host[:port]`'s host is `localhost`, an IPv4 127/8 or the IPv6 loopback
/// address (the port is not looked at).
fn names_loopback(authority: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(authority) else {
        return false;
    };
    let host = match text.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => text.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_route(req: &Request, route: &Route) {
    if let Route::Health | Route::Ready = route {
        assert!(req.is_probe() && ["GET", "HEAD"].contains(&req.method.as_str()));
        let path = if *route == Route::Health {
            "/healthz"
        } else {
            "/readyz"
        };
        assert_eq!(req.bare_path(), path);
        return;
    }
    if let Route::Page(file) = route {
        assert!(req.is_page() && req.method == "GET");
        assert_eq!(req.bare_path(), file.path());
        let known = [PageFile::Index, PageFile::Script, PageFile::Style];
        assert!(known.contains(file));
        return;
    }
    match req.token {
        Some(_) if req.is_open_metrics() => assert_eq!(*route, Route::Metrics),
        Some(token) => assert!(req.has_bearer(token), "accepted without the bearer"),
        None => {
            // A web page's request names its own host or origin.
            let hosts: Vec<_> = req.values("host").collect();
            assert!(
                hosts.len() <= 1,
                "accepted with {} Host headers",
                hosts.len()
            );
            if let Some(host) = hosts.iter().find(|h| !names_loopback(h)) {
                panic!("accepted Host {:?}", String::from_utf8_lossy(host));
            }
            for origin in req.values("origin") {
                assert!(
                    origin.strip_prefix(b"http://").is_some_and(names_loopback),
                    "accepted Origin {:?}",
                    String::from_utf8_lossy(origin)
                );
            }
        }
    }
    let (method, path) = match route {
        Route::Metrics => ("GET", "/metrics".to_owned()),
        Route::ListCameras => ("GET", "/cameras".to_owned()),
        Route::AddCamera => {
            assert_eq!(req.json_of_bounded_size(), (true, true));
            ("POST", "/cameras".to_owned())
        }
        Route::GetCamera(id) => ("GET", format!("/cameras/{id}")),
        Route::DeleteCamera(id) => ("DELETE", format!("/cameras/{id}")),
        Route::Snapshot(id, width) => {
            assert!(
                SNAPSHOT_WIDTHS.contains(width) && width % 2 == 0,
                "width {width}"
            );
            ("GET", format!("/cameras/{id}/snapshot.jpg"))
        }
        Route::Health | Route::Ready | Route::Page(_) => unreachable!("returned above"),
    };
    assert_eq!(
        (req.method.as_str(), req.route_path()),
        (method, path.as_str())
    );
}

fn check_refusal(req: &Request, refusal: &Refusal) {
    let status = refusal.status;
    assert!(STATUSES.contains(&status), "status {status}");
    assert!(!refusal.message.is_empty());
    assert!(!refusal.message.contains(TOKEN), "{}", refusal.message);
    assert_eq!(status == 401, refusal.challenge, "{refusal:?}");
    assert_eq!(status == 405, refusal.allow.is_some(), "{refusal:?}");
    if req.is_probe() || req.is_page() {
        // Only the method can be wrong on a probe's or the page's path.
        assert_eq!(status, 405, "{refusal:?}");
        return;
    }
    match req.token {
        // With a token, the token decides first: whatever the rest, a
        // request with an exact `Bearer <token>` is not a 401, and one
        // without the token after a bearer scheme is.
        Some(_) if req.is_open_metrics() => unreachable!("GET /metrics opened: {refusal:?}"),
        Some(token) => {
            let exact = format!("Bearer {token}");
            if req.values("authorization").any(|v| v == exact.as_bytes()) {
                assert_ne!(status, 401);
            }
            if status != 401 {
                assert!(req.has_bearer(token), "{refusal:?} without the bearer");
            }
            // The loopback guard's refusals are for the API without a token.
            assert_ne!(status, 403, "{refusal:?}");
            assert!(status != 400 || req.is_snapshot_with_width(), "{refusal:?}");
        }
        None => assert_ne!(status, 401),
    }
    let path = req.route_path();
    let snapshot_of = path
        .strip_prefix("/cameras/")
        .and_then(|p| p.strip_suffix("/snapshot.jpg"));
    match status {
        405 => {
            let allow = refusal.allow.unwrap();
            let expected = match path {
                "/metrics" => "GET",
                "/cameras" => "GET, POST",
                // A camera's snapshot; `/cameras/snapshot.jpg` is the
                // camera of that id.
                _ if snapshot_of.is_some() => {
                    assert!(
                        snapshot_of.is_some_and(|id| !id.contains('/')),
                        "405 on {path:?}"
                    );
                    "GET"
                }
                _ => {
                    let id = path.strip_prefix("/cameras/");
                    assert!(id.is_some_and(|id| !id.contains('/')), "405 on {path:?}");
                    "GET, DELETE"
                }
            };
            assert_eq!(allow, expected);
            assert!(
                !allow.split(", ").any(|m| m == req.method),
                "{allow} refuses {}",
                req.method
            );
        }
        413 | 415 => {
            assert_eq!((req.method.as_str(), path), ("POST", "/cameras"));
            let (json, bounded) = req.json_of_bounded_size();
            if status == 415 {
                assert!(!json);
            } else {
                assert!(json && !bounded);
            }
        }
        // Two Host headers, or a snapshot's width that is no number.
        400 => assert!(
            req.values("host").count() > 1 || req.is_snapshot_with_width(),
            "{refusal:?}"
        ),
        _ => {}
    }
}

/// The uri and loop fields of an accepted body: serde's derived reader
/// takes an object, or an array of the fields in order.
fn fields(json: &serde_json::Value) -> (Option<&str>, Option<bool>) {
    match json {
        serde_json::Value::Array(a) => (
            a.first().and_then(|v| v.as_str()),
            a.get(1).and_then(|v| v.as_bool()),
        ),
        _ => (json["uri"].as_str(), json["loop"].as_bool()),
    }
}

fn check_body(body: &[u8]) {
    let refusal = match parse_add(body) {
        Ok(add) => {
            // The body's "uri", parsed as the service parses camera URIs.
            let json = serde_json::from_slice(body).expect("accepted JSON");
            let (uri, loop_file) = fields(&json);
            let uri = uri.expect("a uri string");
            assert_eq!(Ok(&add.uri), CameraUri::parse(uri).as_ref());
            assert_eq!(add.loop_file, loop_file);
            check_accepted_uri(uri, &add.uri);
            return;
        }
        Err(refusal) => refusal,
    };
    assert!(refusal.allow.is_none() && !refusal.challenge, "{refusal:?}");
    if body.len() > MAX_BODY {
        assert_eq!(refusal.status, 413);
        return;
    }
    assert_eq!(refusal.status, 400, "{refusal:?}");
    let message = &refusal.message;
    // JSON it cannot take: only the kind of error and where, as serde's
    // own message quotes the value (a URI with its password).
    if let Some((what, position)) = message.rsplit_once(" at line ") {
        let kinds = [
            "incomplete",
            "not valid JSON",
            "not the expected fields (uri, a string; loop, true or false; no others)",
        ];
        assert!(
            kinds.iter().any(|k| what.starts_with("body must be JSON") && what.ends_with(&format!(": {k}"))),
            "{message}"
        );
        let numbers = position.split_once(" column ");
        assert!(
            numbers.is_some_and(|(l, c)| l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok()),
            "{message}"
        );
        return;
    }
    // Otherwise the URI's refusal, which shows nothing of its credentials.
    let json = serde_json::from_slice(body).expect("JSON read");
    let uri = fields(&json).0.expect("a uri string");
    let err = CameraUri::parse(uri).expect_err("a refused uri");
    assert_eq!(*message, err.to_string());
    check_refused_uri(uri, &err);
}

fuzz_target!(|data: &[u8]| {
    let req = Request::read(data);
    // An id is taken as it is written, and only in the ids' alphabet.
    let last = req.route_path().rsplit('/').next().unwrap_or_default();
    if let Some(id) = parse_id(last) {
        assert_eq!(id, last);
        assert!(camera_id::is_valid(&id));
    }

    let headers: Vec<(&str, &[u8])> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let head = Head {
        method: &req.method,
        path: &req.path,
        headers: &headers,
    };
    let access = Access {
        token: req.token,
        open_metrics: req.open_metrics,
    };
    match decide(&head, access) {
        Ok(route) => check_route(&req, &route),
        Err(refusal) => check_refusal(&req, &refusal),
    }
    check_body(&req.body);
});
