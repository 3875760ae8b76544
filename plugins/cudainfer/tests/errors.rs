//! Every user error becomes an element error that says what is wrong and
//! what to do.

mod common;

use common::*;

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The protobuf field `number` holding `payload` (length-delimited).
fn proto_bytes(number: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 128, "one-byte lengths only");
    let mut out = vec![number << 3 | 2, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// The protobuf field `number` holding the small integer `value`.
fn proto_int(number: u8, value: u8) -> Vec<u8> {
    assert!(value < 128, "one-byte values only");
    vec![number << 3, value]
}

/// An ONNX model (IR 8, opset 13) whose graph is one Identity from float
/// input `images` to `output`, both of `shape`: written here field by field
/// (onnx.proto's numbers), so no model file is kept in the repository.
fn identity_model(name: &str, shape: &[u8]) -> Vec<u8> {
    let dims: Vec<u8> = shape
        .iter()
        .flat_map(|&d| proto_bytes(1, &proto_int(1, d)))
        .collect();
    let tensor_type = [proto_int(1, 1), proto_bytes(2, &dims)].concat(); // FLOAT
    let value_info = |tensor: &str| {
        [
            proto_bytes(1, tensor.as_bytes()),
            proto_bytes(2, &proto_bytes(1, &tensor_type)),
        ]
        .concat()
    };
    let node = [
        proto_bytes(1, b"images"),
        proto_bytes(2, b"output"),
        proto_bytes(4, b"Identity"),
    ]
    .concat();
    let graph = [
        proto_bytes(1, &node),
        proto_bytes(2, name.as_bytes()),
        proto_bytes(11, &value_info("images")),
        proto_bytes(12, &value_info("output")),
    ]
    .concat();
    let opset = [proto_bytes(1, b""), proto_int(2, 13)].concat();
    [
        proto_int(1, 8),
        proto_bytes(7, &graph),
        proto_bytes(8, &opset),
    ]
    .concat()
}

/// `bytes` in a file of this test process, for a model property.
fn temp_model(name: &str, bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("{name}_{}.onnx", std::process::id()));
    std::fs::write(&path, bytes).expect("temporary directory is writable");
    path.display().to_string()
}

fn infer_error(trtinfer_properties: &str) -> String {
    let run = run(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=320,height=240 ! cudapreprocess ! trtinfer {trtinfer_properties} ! appsink name=sink"
    ));
    run.expect_error().to_string()
}

fn assert_contains(message: &str, expected: &str) {
    assert!(
        message.contains(expected),
        "expected '{expected}' in: {message}"
    );
}

#[test]
fn missing_model_file() {
    let e = infer_error("model=/nonexistent/model.onnx");
    assert_contains(
        &e,
        "the model file '/nonexistent/model.onnx' does not exist",
    );
    assert_contains(&e, "set the model property to an existing file");
}

#[test]
fn no_model_set() {
    assert_contains(&infer_error(""), "no model set: set the model property");
}

#[test]
fn model_that_is_a_directory() {
    assert_contains(
        &infer_error(&format!("model={}", data(""))),
        "is a directory",
    );
}

#[test]
fn model_that_is_not_onnx() {
    let e = infer_error(&format!("model={}", data("fake_old_ort.c")));
    assert_contains(&e, "ONNX Runtime cannot load the model");
    assert_contains(&e, "Check that it is a valid ONNX file");
}

#[test]
fn model_whose_input_does_not_fit_the_preset() {
    // A one-channel image input: does not fit the yolox preset's [N, 3, H, W].
    let model = temp_model("gray_input", &identity_model("gray_input", &[1, 1, 64, 64]));
    let e = infer_error(&format!("model={model}"));
    let _ = std::fs::remove_file(&model);
    assert_contains(&e, "does not fit model-type=yolox");
    assert_contains(
        &e,
        "yolox expects an NCHW image input [N, 3, H, W], the model's input is [1, 1, 64, 64]",
    );
}

#[test]
fn missing_labels_file() {
    let e = infer_error(&format!("model={} labels=/nonexistent/labels.txt", model()));
    assert_contains(
        &e,
        "the labels file '/nonexistent/labels.txt' does not exist",
    );
}

#[test]
fn unknown_provider() {
    let e = infer_error(&format!("model={} providers=cuda,tpu", model()));
    assert_contains(&e, "unknown execution provider 'tpu'");
}

#[test]
fn cuda_provider_without_cuda() {
    // The CPU build of ONNX Runtime (CI) has no CUDA provider: asking for it
    // alone fails loudly instead of falling back to the CPU.
    let e = infer_error(&format!("model={} providers=cuda", model()));
    assert_contains(
        &e,
        "no requested execution provider works (cuda provider unavailable",
    );
    assert_contains(&e, "add cpu to providers");
}

#[test]
fn explicit_fallback_to_cpu_is_reported() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=2 ! cudapreprocess ! trtinfer name=infer model={} providers=cuda,cpu ! fakesink",
        model()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    use gst::prelude::*;
    assert_eq!(run_to_end(&pipeline).error, None);
    let infer = pipeline.by_name("infer").unwrap();
    assert_eq!(infer.property::<String>("active-provider"), "cpu");
}

#[test]
fn frame_without_tensor_meta() {
    let run = run(&format!(
        "videotestsrc num-buffers=1 ! trtinfer model={} ! appsink name=sink",
        model()
    ));
    assert_contains(
        run.expect_error(),
        "the frame carries no tensor meta: put cudapreprocess before trtinfer",
    );
}

#[test]
fn preprocess_without_a_model_downstream() {
    let run = run("videotestsrc num-buffers=1 ! cudapreprocess ! appsink name=sink");
    assert_contains(
        run.expect_error(),
        "cudapreprocess does not know the model's input size",
    );
}

/// Runs `description`, whose appsrc `src` pushes one buffer of `size` zero
/// bytes and ends the stream.
fn run_with_one_buffer(description: &str, size: usize) -> Ended {
    use gst::prelude::*;
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let mut buffer = gst::Buffer::from_slice(vec![0u8; size]);
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    let _ = src.push_buffer(buffer);
    let _ = src.end_of_stream();
    run_to_end(&pipeline)
}

#[test]
fn caps_that_cannot_be_handled() {
    // gst-launch refuses to link these already; an application that pushes
    // them (appsrc here) gets our message.
    let ended = run_with_one_buffer(
        &format!(
            "appsrc name=src format=time caps=video/x-raw,format=GRAY8,width=64,height=64,framerate=30/1 \
             ! cudapreprocess ! trtinfer model={} ! fakesink",
            model()
        ),
        64 * 64,
    );
    assert!(ended.error.is_some(), "GRAY8 must not negotiate");
    let said_why = ended.warnings.iter().chain(&ended.error).any(|text| {
        text.contains("cudapreprocess cannot handle video/x-raw, format=(string)GRAY8")
            && text.contains("Put videoconvert (system memory) before it")
    });
    assert!(
        said_why,
        "no message said why GRAY8 failed: {:?} {:?}",
        ended.error, ended.warnings
    );
}

#[test]
fn cuda_memory_caps() {
    // Without a GPU (CI), CUDA caps fail at negotiation with the reason; with
    // one, a frame that claims to be CUDA memory but is not is refused.
    let ended = run_with_one_buffer(
        "appsrc name=src format=time \
         caps=video/x-raw(memory:CUDAMemory),format=NV12,width=64,height=48,framerate=30/1 \
         ! cudapreprocess width=32 height=32 ! fakesink",
        64 * 48 * 3 / 2,
    );
    let expected = if gstcudainfer::cuda::device::driver_present() {
        "the caps say memory:CUDAMemory but the frame is not in CUDA memory"
    } else {
        "cudapreprocess cannot use CUDA memory: there is no CUDA driver on this machine \
         (libcuda.so.1 not found). Without a GPU, decode to system memory"
    };
    assert_contains(&ended.error.expect("CUDA caps must fail here"), expected);
}

#[test]
fn tensor_of_the_wrong_size() {
    let e = run(&format!(
        "videotestsrc num-buffers=1 ! cudapreprocess width=320 height=320 ! trtinfer model={} ! appsink name=sink",
        model()
    ));
    assert_contains(
        e.expect_error(),
        "the tensor is 3x320x320 but the model wants 3x416x416",
    );
}
