//! ONNX Runtime's node placement report, read from the session's verbose
//! log (inference::node_placement): on the CPU provider here (CI has no GPU),
//! where every node is on the CPU and no warning is due. The GPU case
//! (yolov8n_int8 under the cuda provider) is scripts/gpu-fp16.sh's.

mod common;

use common::*;
use gstcudainfer::inference::node_placement::{cpu_fallback_warning, CPU_PROVIDER};
use gstcudainfer::inference::runtime::{self, Provider, ProviderOptions};

fn cpu_session(model: &str, log_placements: bool) -> runtime::NewSession {
    init();
    let env = runtime::environment(&runtime::resolve_library(None)).expect("ONNX Runtime");
    let options = ProviderOptions {
        device_id: 0,
        compute_stream: None,
        cuda: Default::default(),
        tensorrt: Default::default(),
        log_placements,
    };
    let path = shared_dir().join("models").join(model);
    runtime::create_session(&env, &path, &[Provider::Cpu], &options).expect("a CPU session")
}

#[test]
fn the_report_counts_every_node_of_yolov8n_int8_on_the_cpu() {
    let created = cpu_session("yolov8n_int8.onnx", true);
    assert_eq!(created.provider, Provider::Cpu);
    let placements = created.placements.expect("ONNX Runtime reports placements");
    assert_eq!(placements.providers.len(), 1, "{placements:?}");
    let cpu = &placements.providers[CPU_PROVIDER];
    eprintln!("yolov8n_int8: {} nodes on the CPU", cpu.count);
    assert!(cpu.count > 100, "{placements:?}");
    assert_eq!(cpu_fallback_warning(&placements, "cuda"), None);
    // The session runs with our logger attached (measured: no message
    // reaches it during runs on the CPU provider).
    let mut session = created.session;
    let input =
        ort::value::Tensor::from_array(([1usize, 3, 640, 640], vec![0.5f32; 3 * 640 * 640]))
            .unwrap();
    let outputs = session.run(ort::inputs!["images" => input]).unwrap();
    let (shape, _) = outputs[0].try_extract_tensor::<f32>().unwrap();
    assert_eq!(shape.to_vec(), [1, 84, 8400]);
}

/// CPU sessions do not read the log unless asked: nothing changes there.
#[test]
fn cpu_sessions_read_no_placements() {
    assert_eq!(cpu_session("yolox_nano.onnx", false).placements, None);
}
