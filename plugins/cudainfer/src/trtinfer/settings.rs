//! trtinfer's settings: its property values, their defaults, and what
//! they make (the model's configuration, the batcher's key and options,
//! a frame's thresholds).

use std::path::PathBuf;

use gst::glib;

use crate::families::classifier::ClassifierOptions;
use crate::families::ssd::SsdOptions;
use crate::families::{FamilyOptions, ModelType};
use crate::inference::batcher::{BatchKey, BatcherOptions};
use crate::inference::runtime::{parse_providers, CudaOptions, TensorRtOptions};
use crate::inference::{ModelConfig, Thresholds};

pub(super) const DEFAULT_CONFIDENCE: f64 = 0.3;
pub(super) const DEFAULT_NMS: f64 = 0.45;
pub(super) const DEFAULT_PROVIDERS: &str = "cpu";
pub(super) const DEFAULT_MAX_BATCH: u32 = 32;
pub(super) const DEFAULT_BATCH_TIMEOUT_MS: u32 = 5;
pub(super) const DEFAULT_IN_FLIGHT: u32 = 8;
pub(super) const DEFAULT_MAX_DETECTIONS: u32 = 300;
pub(super) const DEFAULT_LATENCY_BUDGET_MS: u32 = 100;

/// What a stream does when inference cannot keep up with it.
#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstCudaInferOverload")]
pub enum Overload {
    /// `skip` for a live stream (cameras: a late result is worth little),
    /// `block` otherwise (files: every frame matters, nothing is late).
    #[default]
    #[enum_value(name = "skip when the stream is live, else block", nick = "auto")]
    Auto = 0,
    #[enum_value(
        name = "pass on uninferred a frame whose result would come later than latency-budget",
        nick = "skip"
    )]
    Skip = 1,
    #[enum_value(
        name = "every frame is inferred; upstream waits when inference falls behind",
        nick = "block"
    )]
    Block = 2,
}

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) model: Option<PathBuf>,
    pub(super) model_type: ModelType,
    pub(super) ssd: SsdOptions,
    pub(super) classifier: ClassifierOptions,
    pub(super) labels: Option<PathBuf>,
    pub(super) confidence_threshold: f64,
    pub(super) nms_threshold: f64,
    pub(super) providers: String,
    pub(super) device_id: i32,
    pub(super) ort_library: Option<PathBuf>,
    pub(super) tf32: bool,
    pub(super) cuda_graph: bool,
    pub(super) tensorrt_cache_dir: Option<PathBuf>,
    pub(super) tensorrt_fp16: bool,
    pub(super) batch_group: String,
    pub(super) max_batch_size: u32,
    /// max-batch-size was set (a fixed-batch model warns only then).
    pub(super) max_batch_size_set: bool,
    pub(super) sessions: u32,
    pub(super) batch_timeout_ms: u32,
    pub(super) max_frames_in_flight: u32,
    pub(super) max_detections: u32,
    pub(super) keep_tensor: bool,
    pub(super) interval: u32,
    pub(super) overload: Overload,
    pub(super) latency_budget_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            model_type: ModelType::default(),
            ssd: SsdOptions::default(),
            classifier: ClassifierOptions::default(),
            labels: None,
            confidence_threshold: DEFAULT_CONFIDENCE,
            nms_threshold: DEFAULT_NMS,
            providers: DEFAULT_PROVIDERS.into(),
            device_id: 0,
            ort_library: None,
            tf32: true,
            cuda_graph: false,
            tensorrt_cache_dir: None,
            tensorrt_fp16: false,
            batch_group: String::new(),
            max_batch_size: DEFAULT_MAX_BATCH,
            max_batch_size_set: false,
            sessions: 0,
            batch_timeout_ms: DEFAULT_BATCH_TIMEOUT_MS,
            max_frames_in_flight: DEFAULT_IN_FLIGHT,
            max_detections: DEFAULT_MAX_DETECTIONS,
            keep_tensor: false,
            interval: 0,
            overload: Overload::Auto,
            latency_budget_ms: DEFAULT_LATENCY_BUDGET_MS,
        }
    }
}

impl Settings {
    /// What a frame keeps of the model's output, read per frame: the
    /// thresholds may change while playing.
    pub(super) fn thresholds(&self) -> Thresholds {
        Thresholds {
            confidence: self.confidence_threshold as f32,
            max_detections: self.max_detections as usize,
            nms: self.nms_threshold as f32,
        }
    }

    /// What makes this element share a batcher, and how one is made, from
    /// its properties; an error names the property to fix.
    pub(super) fn batch_key(&self) -> Result<(BatchKey, BatcherOptions), gst::ErrorMessage> {
        let Some(model) = self.model.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("no model set: set the model property to an ONNX file (for example model=yolox_nano.onnx)")
            ));
        };
        let providers = parse_providers(&self.providers)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
        let config = ModelConfig {
            model,
            model_type: self.model_type,
            family: FamilyOptions {
                ssd: self.ssd.clone(),
                classifier: self.classifier.clone(),
            },
            labels: self.labels.clone(),
            providers,
            device_id: self.device_id,
            ort_library: self.ort_library.clone(),
            cuda: CudaOptions {
                tf32: self.tf32,
                cuda_graph: self.cuda_graph,
                ..CudaOptions::default()
            },
            tensorrt: TensorRtOptions {
                cache_dir: self.tensorrt_cache_dir.clone(),
                fp16: self.tensorrt_fp16,
            },
        };
        let key = BatchKey {
            config,
            group: self.batch_group.clone(),
        };
        let options = BatcherOptions {
            max_batch_size: self.max_batch_size as usize,
            max_batch_size_set: self.max_batch_size_set,
            sessions: self.sessions as usize,
        };
        Ok((key, options))
    }
}
