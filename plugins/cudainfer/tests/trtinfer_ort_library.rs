//! ONNX Runtime library problems. The library is loaded once per process,
//! so every case runs in this one test, before any successful load.

mod common;

use common::*;

fn error_with_library(library: &str) -> String {
    let run = run(&format!(
        "videotestsrc num-buffers=1 ! cudapreprocess ! trtinfer model={} ort-library={library} ! appsink name=sink",
        model()
    ));
    run.expect_error().to_string()
}

#[test]
fn missing_wrong_and_too_old_libraries_are_reported() {
    let e = error_with_library("/nonexistent/libonnxruntime.so");
    assert!(
        e.contains("cannot use the ONNX Runtime library '/nonexistent/libonnxruntime.so'"),
        "{e}"
    );
    assert!(
        e.contains("point the ort-library property or ORT_DYLIB_PATH at libonnxruntime.so"),
        "{e}"
    );

    let e = error_with_library("libc.so.6");
    assert!(e.contains("does not export `OrtGetApiBase`"), "{e}");

    let out = std::env::temp_dir().join(format!("fake_old_ort_{}.so", std::process::id()));
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(format!(
            "{}/tests/data/fake_old_ort.c",
            env!("CARGO_MANIFEST_DIR")
        ))
        .status()
        .expect("a C compiler (cc) to build the stand-in library");
    assert!(status.success());
    let e = error_with_library(out.to_str().unwrap());
    let _ = std::fs::remove_file(&out);
    assert!(e.contains("got '1.10.0'"), "{e}");
    assert!(e.contains("Install ONNX Runtime >= 1.17"), "{e}");

    // After the failures, the right library still loads.
    let run = run(&format!(
        "videotestsrc num-buffers=1 ! cudapreprocess ! trtinfer model={} ! appsink name=sink",
        model()
    ));
    assert_eq!(run.error, None);
}
