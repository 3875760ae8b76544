//! `/metrics` in Prometheus' text format and the cameras as JSON for the
//! API; both show camera URIs redacted only.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::camera::Camera;
use crate::service::Service;
use crate::stats::CameraState;

/// A camera as the API shows it.
#[derive(Debug, Serialize)]
pub struct CameraView {
    pub id: String,
    pub uri: String,
    pub state: &'static str,
    #[serde(rename = "loop")]
    pub loop_file: bool,
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub skipped: u64,
    pub fps: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub last_error: Option<String>,
    /// Objects in the latest published frame, by label.
    pub objects: std::collections::BTreeMap<String, u32>,
    /// Frames this camera encoded as snapshots.
    pub snapshots_encoded: u64,
    /// The GPU it decodes and infers on; null on the CPU path.
    pub gpu: Option<u32>,
}

pub fn view(camera: &Camera, on_gpu: bool) -> CameraView {
    let s = camera.stats.snapshot();
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    CameraView {
        id: camera.id.clone(),
        uri: camera.uri.redacted(),
        state: s.state.name(),
        loop_file: camera.loop_file,
        frames_in: s.frames_in,
        frames_out: s.frames_out,
        dropped: s.dropped,
        reconnects: s.reconnects,
        skipped: s.skipped,
        fps: (s.fps * 100.0).round() / 100.0,
        latency_p50_ms: ms(s.p50),
        latency_p99_ms: ms(s.p99),
        last_error: s.last_error,
        objects: s.objects,
        snapshots_encoded: camera.snapshots.encoded(),
        gpu: on_gpu.then(|| camera.device()),
    }
}

/// A per-camera counter: name, help, how to read it from a snapshot.
type Counter = (
    &'static str,
    &'static str,
    fn(&crate::stats::Snapshot) -> u64,
);

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values are camera ids (`a-z 0-9 - _` only) and fixed words:
/// nothing to escape.
pub fn render(service: &Service) -> String {
    let cameras: Vec<Arc<Camera>> = service.list();
    let snaps: Vec<_> = cameras.iter().map(|c| (c, c.stats.snapshot())).collect();
    let mut out = String::new();
    let counters: [Counter; 5] = [
        (
            "cudainfer_camera_frames_in_total",
            "decoded frames that entered inference",
            |s| s.frames_in,
        ),
        (
            "cudainfer_camera_frames_out_total",
            "frames that left the results element (one JSON line each)",
            |s| s.frames_out,
        ),
        (
            "cudainfer_camera_dropped_total",
            "frames that entered inference and never came out",
            |s| s.dropped,
        ),
        (
            "cudainfer_camera_reconnects_total",
            "times the camera failed and was started again",
            |s| s.reconnects,
        ),
        (
            "cudainfer_camera_skipped_total",
            "frames passed on uninferred because inference could not keep up (overload=skip)",
            |s| s.skipped,
        ),
    ];
    for (name, help, get) in counters {
        header(&mut out, name, "counter", help);
        for (c, s) in &snaps {
            let _ = writeln!(out, "{name}{{camera=\"{}\"}} {}", c.id, get(s));
        }
    }
    header(
        &mut out,
        "cudainfer_camera_fps",
        "gauge",
        "output frames per second (last 64 frames)",
    );
    for (c, s) in &snaps {
        let _ = writeln!(
            out,
            "cudainfer_camera_fps{{camera=\"{}\"}} {:.3}",
            c.id, s.fps
        );
    }
    header(
        &mut out,
        "cudainfer_camera_state",
        "gauge",
        "1 for the camera's current state (connecting, running, retrying, finished, stopping)",
    );
    for (c, s) in &snaps {
        for state in CameraState::ALL {
            let v = u8::from(s.state == state);
            let _ = writeln!(
                out,
                "cudainfer_camera_state{{camera=\"{}\",state=\"{}\"}} {v}",
                c.id,
                state.name()
            );
        }
    }
    header(
        &mut out,
        "cudainfer_camera_latency_seconds",
        "gauge",
        "added latency from decoded frame to published result, over the last 1024 frames",
    );
    for (c, s) in &snaps {
        for (q, v) in [("0.5", s.p50), ("0.99", s.p99)] {
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "cudainfer_camera_latency_seconds{{camera=\"{}\",quantile=\"{q}\"}} {:.6}",
                    c.id,
                    v.as_secs_f64()
                );
            }
        }
    }
    header(
        &mut out,
        "cudainfer_trtinfer_largest_batch",
        "gauge",
        "most frames the camera's shared inference session ran at once",
    );
    // On the GPU path, per GPU of the service; on the CPU, one device.
    let devices: Vec<u32> = if service.settings.gpu {
        service.settings.gpus.clone()
    } else {
        vec![service.settings.device_id]
    };
    let mut largest = vec![0u32; devices.len()];
    for c in &cameras {
        if let Some(b) = c.infer_property::<u32>("largest-batch") {
            if let Some(i) = devices.iter().position(|&d| d == c.device()) {
                largest[i] = largest[i].max(b);
            }
            let _ = writeln!(
                out,
                "cudainfer_trtinfer_largest_batch{{camera=\"{}\"}} {b}",
                c.id
            );
        }
    }
    let processor = if service.settings.gpu { "gpu" } else { "cpu" };
    header(
        &mut out,
        "cudainfer_device_largest_batch",
        "gauge",
        "most frames one inference run held, over the running cameras of the device",
    );
    for (device, largest) in devices.iter().zip(&largest) {
        let _ = writeln!(
            out,
            "cudainfer_device_largest_batch{{device=\"{processor}{device}\"}} {largest}"
        );
    }
    let memory: Vec<(u32, (usize, usize))> = if service.settings.gpu {
        devices
            .iter()
            .filter_map(|&d| gpu_memory(d).map(|m| (d, m)))
            .collect()
    } else {
        Vec::new()
    };
    if !memory.is_empty() {
        header(
            &mut out,
            "cudainfer_gpu_memory_used_bytes",
            "gauge",
            "GPU memory in use (all processes)",
        );
        for (device, (free, total)) in &memory {
            let _ = writeln!(
                out,
                "cudainfer_gpu_memory_used_bytes{{gpu=\"{device}\"}} {}",
                total - free
            );
        }
        header(
            &mut out,
            "cudainfer_gpu_memory_total_bytes",
            "gauge",
            "GPU memory",
        );
        for (device, (_, total)) in &memory {
            let _ = writeln!(
                out,
                "cudainfer_gpu_memory_total_bytes{{gpu=\"{device}\"}} {total}"
            );
        }
    }
    // The cameras share one session: any running one's trtinfer tells.
    let busy = cameras
        .iter()
        .filter_map(|c| c.infer_property::<f64>("busy"))
        .fold(0.0, f64::max);
    header(
        &mut out,
        "cudainfer_inference_busy_ratio",
        "gauge",
        "share of the last 5 s the shared inference session ran batches",
    );
    let _ = writeln!(out, "cudainfer_inference_busy_ratio {busy:.4}");
    header(
        &mut out,
        "cudainfer_headroom_ratio",
        "gauge",
        "1 - busy: what is left of the inference session for more cameras (0 while skipping)",
    );
    let overloaded = service.overloaded().is_some();
    let headroom = if overloaded { 0.0 } else { 1.0 - busy };
    let _ = writeln!(out, "cudainfer_headroom_ratio {headroom:.4}");
    header(
        &mut out,
        "cudainfer_overloaded",
        "gauge",
        "1 while a camera skipped frames for overload in the last 10 s (POST /cameras answers 503)",
    );
    let _ = writeln!(out, "cudainfer_overloaded {}", u8::from(overloaded));
    header(
        &mut out,
        "cudainfer_camera_snapshots_encoded_total",
        "counter",
        "frames the camera drew and encoded as snapshot.jpg (none while nobody asks)",
    );
    for c in &cameras {
        let _ = writeln!(
            out,
            "cudainfer_camera_snapshots_encoded_total{{camera=\"{}\"}} {}",
            c.id,
            c.snapshots.encoded()
        );
    }
    header(
        &mut out,
        "cudainfer_snapshots_encoded_total",
        "counter",
        "snapshots encoded by every camera since the start, removed ones included",
    );
    let _ = writeln!(
        out,
        "cudainfer_snapshots_encoded_total {}",
        crate::snapshot::encoded_total()
    );
    header(&mut out, "cudainfer_cameras", "gauge", "cameras configured");
    let _ = writeln!(out, "cudainfer_cameras {}", cameras.len());
    if let Some(rss) = rss_bytes() {
        header(
            &mut out,
            "cudainfer_process_resident_bytes",
            "gauge",
            "resident memory of the service",
        );
        let _ = writeln!(out, "cudainfer_process_resident_bytes {rss}");
    }
    header(
        &mut out,
        "cudainfer_ready",
        "gauge",
        "1 when GET /readyz answers 200 (every camera past its first connection)",
    );
    let _ = writeln!(
        out,
        "cudainfer_ready {}",
        u8::from(service.not_ready().is_none())
    );
    let (index, count) = service.shard().map_or((0, 1), |s| (s.index, s.count));
    header(
        &mut out,
        "cudainfer_shard_index",
        "gauge",
        "this instance's share of the camera list: I of --shard I/N (0 unsharded)",
    );
    let _ = writeln!(out, "cudainfer_shard_index {index}");
    header(
        &mut out,
        "cudainfer_shard_count",
        "gauge",
        "instances sharing the camera list: N of --shard I/N (1 unsharded)",
    );
    let _ = writeln!(out, "cudainfer_shard_count {count}");
    out
}

/// Free and total memory of GPU `device`, through the driver (the context
/// is the device's primary one, which the pipelines use already).
fn gpu_memory(device: u32) -> Option<(usize, usize)> {
    type Contexts = Mutex<HashMap<u32, Option<Arc<cudarc::driver::CudaContext>>>>;
    static CONTEXTS: OnceLock<Contexts> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let ctx = contexts
        .entry(device)
        .or_insert_with(|| {
            std::panic::catch_unwind(|| cudarc::driver::CudaContext::new(device as usize).ok())
                .ok()
                .flatten()
        })
        .as_ref()?;
    ctx.mem_get_info().ok()
}

/// Resident set size from /proc/self/statm (Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
