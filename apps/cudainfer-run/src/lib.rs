//! The parts of cudainfer-run that decide on untrusted input without I/O:
//! camera URIs (parsing, redaction), camera ids and shards, and API requests. A library so that the
//! fuzz targets reach them; the service itself is the binary (`main.rs`).

pub mod camera_id;
pub mod camera_uri;
pub mod request;
