//! What one inference costs on the GPU, without decoding or pre-processing:
//! the batcher's own work (gather, ONNX Runtime, output decoding, copying
//! the candidates back) on tensors already in GPU memory.
//!
//!   infer_bench MODEL [--batches 1,8,16,32] [--runs K] [--configs fp32,tf32,tf32+graph,tf32+nhwc,...] [--sessions S] [--model-type yolox|yolov8|...]
//!
//! Each config loads its own session (cuda provider) and warms it up at
//! each batch size, which is excluded from the timing; then K batches run
//! back to back, each waited for, as the batcher does. With `--sessions S`,
//! S sessions, each on a CUDA stream of its own, run K batches each from S
//! threads at once (the batcher's pool). Prints a table.

use std::time::Instant;

use gstcudainfer::cuda::{self, DeviceTensor, TensorPool};
use gstcudainfer::families::ModelType;
use gstcudainfer::inference::runtime::{CudaOptions, Provider, TensorRtOptions};
use gstcudainfer::inference::{Model, ModelConfig, SessionStream};
use gstcudainfer::spec::ElementType;
use gstcudainfer::tensor::{FrameTransform, Tensor, TensorStorage};

struct Args {
    model: String,
    batches: Vec<usize>,
    runs: usize,
    configs: Vec<String>,
    sessions: usize,
    model_type: ModelType,
}

fn parse_args() -> Args {
    let usage = "usage: infer_bench MODEL [--batches 1,8,16,32] [--runs K] [--configs fp32,tf32,tf32+graph,tf32+nhwc,...] [--sessions S] [--model-type yolox|yolov8|...]";
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        model: it.next().expect(usage),
        batches: vec![1, 8, 16, 32],
        runs: 100,
        configs: vec!["fp32".into(), "tf32".into()],
        sessions: 1,
        model_type: ModelType::default(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().expect(usage);
        match flag.as_str() {
            "--batches" => {
                args.batches = value.split(',').map(|b| b.parse().expect(usage)).collect()
            }
            "--runs" => args.runs = value.parse().expect(usage),
            "--configs" => args.configs = value.split(',').map(str::to_string).collect(),
            "--sessions" => args.sessions = value.parse::<usize>().expect(usage).max(1),
            "--model-type" => {
                use gst::glib::{self, prelude::*};
                let class = glib::EnumClass::with_type(ModelType::static_type()).expect("an enum");
                args.model_type = class
                    .value_by_nick(&value)
                    .and_then(|v| v.to_value(&class).get::<ModelType>().ok())
                    .unwrap_or_else(|| panic!("unknown model type {value}: {usage}"));
            }
            _ => panic!("{usage}"),
        }
    }
    args
}

/// A configuration: `fp32` (ONNX Runtime's CUDA defaults), or levers
/// joined by `+`: `tf32`, `graph` (CUDA graph), `nhwc` (cuDNN's NHWC
/// convolutions), `heuristic` (cuDNN's heuristic algorithm choice instead
/// of the exhaustive search), `fusebias` (fused convolution and bias).
fn cuda_options(config: &str) -> CudaOptions {
    let mut options = CudaOptions::default();
    for lever in config.split('+') {
        match lever {
            "fp32" => {}
            "tf32" => options.tf32 = true,
            "graph" => options.cuda_graph = true,
            "nhwc" => options.prefer_nhwc = true,
            "heuristic" => options.heuristic_conv_search = true,
            "fusebias" => options.fuse_conv_bias = true,
            other => panic!(
                "unknown lever {other} in {config}: use fp32 or tf32, graph, nhwc, heuristic, fusebias joined by +"
            ),
        }
    }
    options
}

/// `count` tensors of the model's input size on the GPU, all mid-grey.
fn tensors(detector: &Model, count: usize) -> Vec<Tensor> {
    let spec = detector.input_spec();
    let (w, h) = (spec.width as usize, spec.height as usize);
    let gpu = cuda::gpu(0).expect("a CUDA device");
    let pool = TensorPool::new(gpu.clone(), 3 * w * h, spec.element_type);
    // Mid-grey in the model's element type.
    let grey: Vec<u8> = match spec.element_type {
        ElementType::Float32 => 0.5f32.to_ne_bytes().to_vec(),
        ElementType::Float16 => half::f16::from_f32(0.5).to_ne_bytes().to_vec(),
    }
    .repeat(3 * w * h);
    (0..count)
        .map(|_| {
            let mut buffer = pool.take().expect("GPU memory");
            gpu.stream()
                .memcpy_htod(&grey, buffer.slice_mut())
                .expect("upload");
            Tensor {
                channels: 3,
                height: h,
                width: w,
                storage: TensorStorage::Device(
                    DeviceTensor::new(buffer, gpu.clone(), None).expect("event"),
                ),
                transform: FrameTransform {
                    scale_x: 1.0,
                    scale_y: 1.0,
                    offset_x: 0.0,
                    offset_y: 0.0,
                    frame_width: w as u32,
                    frame_height: h as u32,
                },
            }
        })
        .collect()
}

fn main() {
    let args = parse_args();
    println!(
        "| config | sessions | batch | load + warm-up s | ms per batch p50 | p99 | frames/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for config in &args.configs {
        for &batch in &args.batches {
            let started = Instant::now();
            let model_config = ModelConfig {
                model: args.model.clone().into(),
                model_type: args.model_type,
                family: Default::default(),
                labels: None,
                providers: vec![Provider::Cuda],
                device_id: 0,
                ort_library: None,
                cuda: cuda_options(config),
                tensorrt: TensorRtOptions::default(),
            };
            // One session on the GPU's shared stream, or several each on a
            // stream of its own, run from threads of their own (as the
            // batcher's pool does).
            let stream = if args.sessions > 1 {
                SessionStream::Own
            } else {
                SessionStream::Shared
            };
            let mut models = Vec::with_capacity(args.sessions);
            let mut failed = None;
            for _ in 0..args.sessions {
                let mut model =
                    Model::load_on(&model_config, stream, |w| eprintln!("warning: {w}"))
                        .unwrap_or_else(|e| panic!("cannot load the model: {e:?}"));
                // A model the CUDA graph cannot capture fails here: say so
                // in the table and go on with the other configurations.
                if let Err(e) = model.warm_up(batch) {
                    failed = Some(e);
                    break;
                }
                models.push(model);
            }
            if let Some(e) = failed {
                println!(
                    "| {config} | {} | {batch} | failed: {e} | | | |",
                    args.sessions
                );
                continue;
            }
            let load_s = started.elapsed().as_secs_f64();
            let inputs = tensors(&models[0], batch);
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let thresholds = vec![
                gstcudainfer::inference::Thresholds {
                    confidence: 0.3,
                    max_detections: 300,
                    nms: 0.45,
                };
                batch
            ];
            let all = Instant::now();
            let mut times_ms: Vec<f64> = std::thread::scope(|scope| {
                let runs: Vec<_> = models
                    .iter_mut()
                    .map(|model| {
                        let (refs, thresholds) = (&refs, &thresholds);
                        scope.spawn(move || {
                            let mut times = Vec::with_capacity(args.runs);
                            for _ in 0..args.runs {
                                let one = Instant::now();
                                for r in model.run_batch(refs, thresholds) {
                                    r.expect("inference");
                                }
                                times.push(one.elapsed().as_secs_f64() * 1e3);
                            }
                            times
                        })
                    })
                    .collect();
                runs.into_iter()
                    .flat_map(|r| r.join().expect("a run does not panic"))
                    .collect()
            });
            let fps = (args.runs * args.sessions * batch) as f64 / all.elapsed().as_secs_f64();
            times_ms.sort_by(f64::total_cmp);
            let at = |q: f64| times_ms[((times_ms.len() - 1) as f64 * q).round() as usize];
            println!(
                "| {config} | {} | {batch} | {load_s:.1} | {:.2} | {:.2} | {fps:.0} |",
                args.sessions,
                at(0.5),
                at(0.99)
            );
        }
    }
}
