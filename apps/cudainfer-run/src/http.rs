//! The REST API and /metrics (tiny_http: a small synchronous server; the
//! routes are few, the service is thread-based, no async runtime needed).
//!
//! `GET /cameras`, `POST /cameras` (`{"uri": "...", "loop": true}`),
//! `GET|DELETE /cameras/{id}`, `GET /metrics`. With a token every request
//! needs `Authorization: Bearer <token>`. Bodies over 16 KiB, bad JSON,
//! unknown fields, unknown ids, refused URIs: a 4xx with a JSON
//! `{"error": …}` that says why, and nothing changes.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::camera_uri::{CameraUri, UriError};
use crate::log::{self, Level};
use crate::metrics;
use crate::service::{AddError, Service};

const MAX_BODY: usize = 16 * 1024;
const WORKERS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddCamera {
    uri: String,
    #[serde(rename = "loop")]
    loop_file: Option<bool>,
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

/// Starts the server's worker threads; returns the bound address (port 0
/// picks a free one).
pub fn serve(
    addr: SocketAddr,
    token: Option<String>,
    service: Arc<Service>,
) -> Result<SocketAddr, HttpError> {
    let server = Server::http(addr).map_err(|e| HttpError::Bind(addr, e.to_string()))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| HttpError::Bind(addr, "not an IP socket".into()))?;
    let server = Arc::new(server);
    let token = Arc::new(token);
    for i in 0..WORKERS {
        let (server, token, service) = (server.clone(), token.clone(), service.clone());
        std::thread::Builder::new()
            .name(format!("http {i}"))
            .spawn(move || {
                for request in server.incoming_requests() {
                    handle(request, token.as_deref(), &service);
                }
            })
            .expect("a thread can be started");
    }
    Ok(bound)
}

fn json_reply(status: u16, body: &impl serde::Serialize) -> Reply {
    let text = serde_json::to_vec(body).expect("serialisable");
    Response::from_data(text)
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", "application/json").expect("valid header"))
}

fn error_reply(status: u16, message: &str) -> Reply {
    json_reply(status, &serde_json::json!({ "error": message }))
}

/// Equal length and bytes, compared without an early exit.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorised(request: &Request, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .any(|h| {
            h.value
                .as_str()
                .strip_prefix("Bearer ")
                .is_some_and(|v| token_matches(v.trim().as_bytes(), token.as_bytes()))
        })
}

fn handle(mut request: Request, token: Option<&str>, service: &Service) {
    let method = request.method().clone();
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let reply = if !authorised(&request, token) {
        error_reply(
            401,
            "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
        )
        .with_header(Header::from_bytes("WWW-Authenticate", "Bearer").expect("valid header"))
    } else {
        route(&mut request, &method, &path, service)
    };
    let status = reply.status_code().0;
    if status >= 400 {
        log::event(
            Level::Warn,
            "api_refused",
            &[
                ("method", &method),
                ("path", &path.chars().take(100).collect::<String>()),
                ("status", &status),
            ],
        );
    }
    let _ = request.respond(reply);
}

fn route(request: &mut Request, method: &Method, path: &str, service: &Service) -> Reply {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (method, segments.as_slice()) {
        (Method::Get, ["metrics"]) => Response::from_string(metrics::render(service)).with_header(
            Header::from_bytes("Content-Type", "text/plain; version=0.0.4").expect("valid header"),
        ),
        (Method::Get, ["cameras"]) => {
            let list: Vec<_> = service.list().iter().map(|c| metrics::view(c)).collect();
            json_reply(200, &list)
        }
        (Method::Post, ["cameras"]) => add_camera(request, service),
        (Method::Get, ["cameras", id]) => match service.get(id) {
            Some(c) => json_reply(200, &metrics::view(&c)),
            None => error_reply(404, "no such camera"),
        },
        (Method::Delete, ["cameras", id]) => {
            if service.remove(id) {
                Response::from_data(Vec::new()).with_status_code(204)
            } else {
                error_reply(404, "no such camera")
            }
        }
        (_, ["metrics"]) | (_, ["cameras"]) | (_, ["cameras", _]) => {
            error_reply(405, "method not allowed on this path")
        }
        _ => error_reply(404, "no such path: use /cameras, /cameras/{id} or /metrics"),
    }
}

fn add_camera(request: &mut Request, service: &Service) -> Reply {
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return error_reply(413, "request body over 16 KiB");
    }
    let mut body = Vec::new();
    // Read one byte more than allowed to tell a body that is too large.
    if request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .is_err()
    {
        return error_reply(400, "cannot read the request body");
    }
    if body.len() > MAX_BODY {
        return error_reply(413, "request body over 16 KiB");
    }
    let add: AddCamera = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return error_reply(
                400,
                &format!("body must be JSON {{\"uri\": \"...\", \"loop\": true|false}}: {e}"),
            )
        }
    };
    let uri = match CameraUri::parse(&add.uri) {
        Ok(u) => u,
        Err(e) => return error_reply(400, &e.to_string()),
    };
    match service.add(uri, add.loop_file, false) {
        Ok(camera) => json_reply(201, &metrics::view(&camera)).with_header(
            Header::from_bytes("Location", format!("/cameras/{}", camera.id))
                .expect("valid header"),
        ),
        Err(AddError::Uri(e @ UriError::NotAllowed(_))) => error_reply(403, &e.to_string()),
        Err(AddError::Uri(e)) => error_reply(400, &e.to_string()),
        Err(e @ AddError::Full) => error_reply(409, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::token_matches(b"abc", b"abc"));
        assert!(!super::token_matches(b"abd", b"abc"));
        assert!(!super::token_matches(b"ab", b"abc"));
    }
}
