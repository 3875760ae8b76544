//! Camera URIs as cudainfer-run takes them (command line, configuration
//! file, POST /cameras): `CameraUri::parse` on any text. Nothing may
//! panic; the user information decides nothing and reaches neither the
//! bare URI (what GStreamer gets), nor the redacted form, a debug print or
//! an error; `redact_text` removes the secrets from the URI's own text.
#![no_main]

use libfuzzer_sys::fuzz_target;

use cudainfer_run::camera_uri::CameraUri;
use gst_cudainfer_fuzz::{check_accepted_uri, check_refused_uri, CappedAlloc};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fuzz_target!(|data: &[u8]| {
    // Lossy: the service reads URIs as UTF-8 text.
    let uri = String::from_utf8_lossy(data);
    match CameraUri::parse(&uri) {
        Ok(parsed) => check_accepted_uri(&uri, &parsed),
        Err(e) => check_refused_uri(&uri, &e),
    }
});
