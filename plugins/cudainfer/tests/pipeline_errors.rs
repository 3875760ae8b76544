//! Every user error becomes an element error that says what is wrong and
//! what to do.

mod common;

use common::onnx::*;
use common::*;

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A model whose graph is one Identity from input `images` to `output`,
/// both of `elem_type` and `shape`.
fn identity_model(name: &str, elem_type: u64, shape: &[Dim]) -> Vec<u8> {
    onnx_model(
        name,
        &[node("Identity", &["images"], &["output"], &[])],
        &[("images", elem_type, shape)],
        &[("output", elem_type, shape)],
    )
}

/// A model whose output `output` (of `elem_type` and `shape`) is all zeros
/// from a Constant, whatever its `inputs` (unused): a YOLOX-shaped output
/// that loads today, so a test sees its own check fire and not the
/// family's output check.
fn constant_model(name: &str, inputs: &[Decl], elem_type: u64, shape: &[u64]) -> Vec<u8> {
    let dims = fixed(shape);
    onnx_model(
        name,
        &[node(
            "Constant",
            &[],
            &["output"],
            &[zeros_attribute("value", elem_type, shape)],
        )],
        inputs,
        &[("output", elem_type, &dims)],
    )
}

/// YOLOX's output for a 64x64 input with 2 classes: 8x8 + 4x4 + 2x2 anchors.
const YOLOX_64_OUTPUT: [u64; 3] = [1, 84, 7];

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
    let model = temp_model(
        "gray_input",
        &identity_model("gray_input", FLOAT, &fixed(&[1, 1, 64, 64])),
    );
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
        "cudapreprocess cannot use CUDA memory on CUDA device 0 (device-id): there is no CUDA \
         driver on this machine (libcuda.so.1 not found). Without a GPU, decode to system memory"
    };
    assert_contains(&ended.error.expect("CUDA caps must fail here"), expected);
}

#[test]
fn tensor_of_the_wrong_size() {
    let e = run(&format!(
        "videotestsrc num-buffers=1 ! cudapreprocess width=320 height=320 ! trtinfer model={} ! appsink name=sink",
        model()
    ));
    // Refused when the caps are set, before any frame is converted.
    assert_contains(
        e.expect_error(),
        "cudapreprocess width/height make a 320x320 tensor but the model downstream wants 416x416",
    );
    assert!(e.buffers.is_empty());
}

#[test]
fn tensor_too_large() {
    let e = within(30, || {
        infer_error_with_preprocess("width=16384 height=16384", "")
    });
    assert_contains(
        &e,
        "cudapreprocess cannot make a 16384x16384 tensor (width x height): at most 8192 on a side",
    );
}

/// The error of videotestsrc ! cudapreprocess `pre` ! trtinfer (the shared
/// model) `infer`, with `configure` called on cudapreprocess before start.
fn infer_error_configured(configure: impl FnOnce(&gst::Element)) -> String {
    use gst::prelude::*;
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! cudapreprocess name=pre ! trtinfer model={} ! fakesink",
        model()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    configure(&pipeline.by_name("pre").unwrap());
    run_to_end(&pipeline)
        .error
        .expect("the pipeline should have failed")
}

fn infer_error_with_preprocess(preprocess: &str, infer: &str) -> String {
    run(&format!(
        "videotestsrc num-buffers=1 ! cudapreprocess {preprocess} ! trtinfer model={} {infer} ! appsink name=sink",
        model()
    ))
    .expect_error()
    .to_string()
}

#[test]
fn mean_that_is_not_a_number() {
    use gst::prelude::*;
    let e = infer_error_configured(|pre| {
        pre.set_property("mean", gst::Array::new([f64::NAN, 0.0, 0.0]))
    });
    assert_contains(&e, "cudapreprocess mean and std must be finite numbers");
}

#[test]
fn std_that_is_infinite() {
    use gst::prelude::*;
    let e = infer_error_configured(|pre| pre.set_property("std", gst::Array::new([f64::INFINITY])));
    assert_contains(&e, "cudapreprocess mean and std must be finite numbers");
}

#[test]
fn std_that_is_too_small() {
    let e = infer_error_with_preprocess("std=<1e-9>", "");
    assert_contains(&e, "cudapreprocess std must be at least 1e-6 in magnitude");
}

/// `f`'s result, failing the test if it takes longer than `seconds` (a hang
/// is a failure too; the stuck thread is left behind).
fn within<T: Send + 'static>(seconds: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(seconds))
        .unwrap_or_else(|_| panic!("no answer within {seconds} s"))
}

/// A FIFO in the temporary directory, for the special-file cases.
fn temp_fifo(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("{name}_{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    path.display().to_string()
}

#[test]
fn model_that_is_a_fifo() {
    let fifo = temp_fifo("model_fifo");
    let property = format!("model={fifo}");
    let e = within(30, move || infer_error(&property));
    let _ = std::fs::remove_file(&fifo);
    assert_contains(&e, "is not a regular file");
    assert_contains(&e, "set the model property to a regular file");
}

#[test]
fn labels_that_are_a_device() {
    let property = format!("model={} labels=/dev/zero", model());
    let e = within(30, move || infer_error(&property));
    assert_contains(&e, "the labels file '/dev/zero' is not a regular file");
}

#[test]
fn labels_that_are_a_fifo() {
    let fifo = temp_fifo("labels_fifo");
    let property = format!("model={} labels={fifo}", model());
    let e = within(30, move || infer_error(&property));
    let _ = std::fs::remove_file(&fifo);
    assert_contains(&e, "is not a regular file");
}

#[test]
fn labels_file_too_large() {
    let path = std::env::temp_dir().join(format!("big_labels_{}.txt", std::process::id()));
    std::fs::write(&path, "x\n".repeat(600 * 1024)).unwrap();
    let e = infer_error(&format!("model={} labels={}", model(), path.display()));
    let _ = std::fs::remove_file(&path);
    assert_contains(&e, "is larger than 1 MiB");
}

#[test]
fn empty_model_file() {
    let model = temp_model("empty", b"");
    let e = infer_error(&format!("model={model}"));
    let _ = std::fs::remove_file(&model);
    assert_contains(&e, "is empty: set the model property to an ONNX file");
}

#[test]
fn truncated_model_file() {
    let whole = identity_model("truncated", FLOAT, &fixed(&[1, 3, 64, 64]));
    let model = temp_model("truncated", &whole[..whole.len() / 2]);
    let e = infer_error(&format!("model={model}"));
    let _ = std::fs::remove_file(&model);
    assert_contains(&e, "ONNX Runtime cannot load the model");
    assert_contains(&e, "Check that it is a valid ONNX file");
}

/// The error of a pipeline running the model `bytes` (a temporary file).
fn model_error(name: &str, bytes: &[u8]) -> String {
    let model = temp_model(name, bytes);
    let e = within(60, {
        let model = model.clone();
        move || infer_error(&format!("model={model}"))
    });
    let _ = std::fs::remove_file(&model);
    e
}

#[test]
fn model_with_two_inputs() {
    let shape = fixed(&[1, 3, 64, 64]);
    let e = model_error(
        "two_inputs",
        &constant_model(
            "two_inputs",
            &[("images", FLOAT, &shape), ("other", FLOAT, &shape)],
            FLOAT,
            &YOLOX_64_OUTPUT,
        ),
    );
    assert_contains(
        &e,
        "the model has 2 inputs (images, other) but model-type=yolox takes exactly one",
    );
}

#[test]
fn model_with_uint8_input() {
    let e = model_error(
        "uint8_input",
        &constant_model(
            "uint8_input",
            &[("images", UINT8, &fixed(&[1, 3, 64, 64]))],
            FLOAT,
            &YOLOX_64_OUTPUT,
        ),
    );
    assert_contains(
        &e,
        "the model's input 'images' is uint8 but model-type=yolox takes float32 or float16",
    );
    assert_contains(&e, "export the model with a float32 input");
}

/// float16 outputs are converted; float64 ones are not taken.
#[test]
fn model_with_float64_output() {
    let e = model_error(
        "float64_output",
        &constant_model(
            "float64_output",
            &[("images", FLOAT, &fixed(&[1, 3, 64, 64]))],
            DOUBLE,
            &YOLOX_64_OUTPUT,
        ),
    );
    assert_contains(
        &e,
        "the model's output 'output' is float64 but model-type=yolox needs float32 or float16",
    );
}

#[test]
fn model_with_a_flat_output() {
    let e = model_error(
        "flat_output",
        &onnx_model(
            "flat_output",
            &[node("Flatten", &["images"], &["output"], &[])],
            &[("images", FLOAT, &fixed(&[1, 3, 64, 64]))],
            &[("output", FLOAT, &fixed(&[1, 3 * 64 * 64]))],
        ),
    );
    assert_contains(
        &e,
        "yolox's output has 3 dimensions [N, anchors, 5 + classes], the model's output is [1, 12288]",
    );
}

#[test]
fn model_with_dynamic_height_and_width() {
    let e = model_error(
        "dynamic_hw",
        &identity_model(
            "dynamic_hw",
            FLOAT,
            &[Fixed(1), Fixed(3), Named("height"), Named("width")],
        ),
    );
    assert_contains(&e, "yolox needs a fixed input height and width");
    assert_contains(&e, "export the model with a fixed input size");
}

#[test]
fn model_with_a_huge_input() {
    let e = model_error(
        "huge_input",
        &identity_model("huge_input", FLOAT, &fixed(&[1, 3, 16384, 16384])),
    );
    assert_contains(
        &e,
        "the model's input is 16384x16384 (height x width): at most 8192 on a side is supported",
    );
}

#[test]
fn model_with_too_many_input_values() {
    let e = model_error(
        "many_values",
        &identity_model("many_values", FLOAT, &fixed(&[1, 3, 8192, 8192])),
    );
    assert_contains(
        &e,
        "the model's input has 201326592 values per frame: at most 67108864 are supported",
    );
}

#[test]
fn labels_with_a_blank_line_keep_class_ids() {
    // COCO's names with the first ("person") left blank: every later class
    // keeps its line, so the dog is still "dog" and class 0 is class-0.
    let coco = std::fs::read_to_string(labels()).unwrap();
    let blanked: String = std::iter::once("")
        .chain(coco.lines().skip(1))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = std::env::temp_dir().join(format!("blank_labels_{}.txt", std::process::id()));
    std::fs::write(&path, blanked).unwrap();
    let run = run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! cudapreprocess ! trtinfer model={} labels={} ! appsink name=sink",
        media("dog.jpg"),
        model(),
        path.display()
    ));
    let _ = std::fs::remove_file(&path);
    assert_eq!(run.error, None);
    let found = &run.detections()[0].detections;
    let dog = found
        .iter()
        .find(|d| d.class_id == 16)
        .expect("the dog is found");
    assert_eq!(dog.label, "dog");
    assert!(
        run.warnings.iter().all(|w| !w.contains("labels file")),
        "80 lines for 80 classes: {:?}",
        run.warnings
    );
}

#[test]
fn model_with_a_fixed_batch_of_two() {
    // The host path pads the batch up to the model's fixed size: three
    // frames make runs of 2 (or 1) real frames, each padded to 2.
    let model = temp_model(
        "batch_of_two",
        &constant_model(
            "batch_of_two",
            &[("images", FLOAT, &fixed(&[2, 3, 64, 64]))],
            FLOAT,
            &[2, 84, 7],
        ),
    );
    let run = run(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=320,height=240 ! cudapreprocess ! trtinfer model={model} ! appsink name=sink"
    ));
    let _ = std::fs::remove_file(&model);
    assert_eq!(run.error, None);
    assert_eq!(run.detections().len(), 3);
}

#[test]
fn fixed_batch_model_warns_only_for_an_asked_batch_size() {
    let pipeline = |infer: &str| {
        format!(
            "videotestsrc num-buffers=1 ! cudapreprocess ! trtinfer model={} {infer} ! appsink name=sink",
            model()
        )
    };
    // yolox_nano.onnx has a fixed batch of 1; the default max-batch-size
    // must not warn about it on every run.
    // (Own batch groups: a session shared with another test would warn
    // about sharing.)
    let quiet = run(&pipeline("batch-group=quiet"));
    assert_eq!(quiet.error, None);
    assert_eq!(quiet.warnings, Vec::<String>::new());
    let asked = run(&pipeline("max-batch-size=8 batch-group=asked"));
    assert_eq!(asked.error, None);
    assert!(
        asked
            .warnings
            .iter()
            .any(|w| w.contains("so frames are not batched")),
        "{:?}",
        asked.warnings
    );
}

/// CUDA graphs are a cuda provider feature: elsewhere a warning says the
/// property does nothing, and the frames run as usual.
#[test]
fn cuda_graph_without_the_cuda_provider_says_it_does_nothing() {
    let run = run(&format!(
        "videotestsrc num-buffers=2 ! cudapreprocess ! trtinfer model={} cuda-graph=true \
         batch-group=cuda-graph-on-cpu ! appsink name=sink",
        model()
    ));
    assert_eq!(run.error, None);
    assert_eq!(run.buffers.len(), 2);
    assert!(
        run.warnings.iter().any(|w| w.contains(
            "cuda-graph=true applies to the cuda provider only; the cpu provider runs without it"
        )),
        "{:?}",
        run.warnings
    );
}

#[test]
fn start_time_properties_do_not_change_while_playing() {
    use gst::prelude::*;
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! cudapreprocess name=pre ! trtinfer name=infer model={} ! fakesink",
        model()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (reached, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
    assert!(reached.is_ok(), "the pipeline did not start");
    let infer = pipeline.by_name("infer").unwrap();
    let pre = pipeline.by_name("pre").unwrap();
    infer.set_property("model", "/elsewhere/other.onnx");
    infer.set_property("max-batch-size", 4u32);
    pre.set_property("width", 320u32);
    // Thresholds apply to the next frame: they still change.
    infer.set_property("confidence-threshold", 0.5f64);
    let read = (
        infer.property::<String>("model"),
        infer.property::<u32>("max-batch-size"),
        pre.property::<u32>("width"),
        infer.property::<f64>("confidence-threshold"),
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(read, (model(), 32, 0, 0.5));
    // Stopped, they change again.
    infer.set_property("max-batch-size", 4u32);
    assert_eq!(infer.property::<u32>("max-batch-size"), 4);
}
