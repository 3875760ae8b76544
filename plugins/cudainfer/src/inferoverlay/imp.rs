use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::draw::cuda::CudaOverlay;
use super::draw::{self, OverlayError, Style, Target};
use crate::cuda as gpu_mod;
use crate::cuda::gst_cuda;
use crate::properties::{may_change_now, MUTABLE_PLAYING, MUTABLE_READY};
use crate::{FrameDetections, CUDA_MEMORY_FEATURE};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "inferoverlay",
        gst::DebugColorFlags::empty(),
        Some("Draws detection results on frames"),
    )
});

#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    style: Style,
    device_id: u32,
}

enum Backend {
    Cpu,
    Cuda(CudaOverlay),
}

struct State {
    info: gst_video::VideoInfo,
    target: Target,
    backend: Backend,
}

#[derive(Default)]
pub struct InferOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for InferOverlay {
    const NAME: &'static str = "GstInferOverlay";
    type Type = super::InferOverlay;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for InferOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Style::default();
            vec![
                glib::ParamSpecUInt::builder("line-thickness")
                    .nick("Line thickness")
                    .blurb("Width of the box lines in pixels, rounded up to an even number (boxes are drawn \
                            on a 2-pixel grid so that 4:2:0 chroma is coloured exactly)")
                    .minimum(1)
                    .maximum(64)
                    .default_value(d.thickness)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecUInt::builder("text-scale")
                    .nick("Text scale")
                    .blurb("Size of the label text: each pixel of the 8x8 font becomes text-scale x text-scale \
                            pixels (2: 16-pixel letters)")
                    .minimum(1)
                    .maximum(16)
                    .default_value(d.text_scale)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecBoolean::builder("show-labels")
                    .nick("Show labels")
                    .blurb("Write the class name (and the top class of a classifier run on the object) in the label")
                    .default_value(d.show_labels)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecBoolean::builder("show-confidence")
                    .nick("Show confidence")
                    .blurb("Write the confidence (0.00-1.00) in the label")
                    .default_value(d.show_confidence)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecBoolean::builder("show-track-id")
                    .nick("Show track id")
                    .blurb("Write the object's track id (#id) in the label, where a tracker has set one")
                    .default_value(d.show_track_id)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecUInt::builder("device-id")
                    .nick("CUDA device")
                    .blurb("GPU whose primary CUDA context the CUDA-memory frames are in (cudapreprocess's device-id)")
                    .default_value(0)
                    .flags(MUTABLE_READY)
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if !may_change_now(self.obj().upcast_ref(), *CAT, pspec) {
            return;
        }
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "line-thickness" => s.style.thickness = value.get().expect("type checked upstream"),
            "text-scale" => s.style.text_scale = value.get().expect("type checked upstream"),
            "show-labels" => s.style.show_labels = value.get().expect("type checked upstream"),
            "show-confidence" => {
                s.style.show_confidence = value.get().expect("type checked upstream")
            }
            "show-track-id" => s.style.show_track_id = value.get().expect("type checked upstream"),
            "device-id" => s.device_id = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "line-thickness" => s.style.thickness.to_value(),
            "text-scale" => s.style.text_scale.to_value(),
            "show-labels" => s.style.show_labels.to_value(),
            "show-confidence" => s.style.show_confidence.to_value(),
            "show-track-id" => s.style.show_track_id.to_value(),
            "device-id" => s.device_id.to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for InferOverlay {}

impl ElementImpl for InferOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Inference overlay",
                "Filter/Effect/Video",
                "Draws trtinfer's results on the frame, in place: each object's box and label (class, \
                 confidence, track id, its crop's top class) and a whole-frame classifier's top class; \
                 in system memory, or with a CUDA kernel in CUDA memory",
                "gst-cudainfer developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(crate::pixel_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl InferOverlay {
    /// The CUDA backend, or why there is none, in words for the user.
    fn cuda_backend(&self, device_id: u32) -> Result<CudaOverlay, OverlayError> {
        let gpu = gpu_mod::gpu(device_id as usize).map_err(OverlayError::NoGpu)?;
        CudaOverlay::new(gpu)
    }
}

impl BaseTransformImpl for InferOverlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let fail = |domain_error: gst::ErrorMessage, text: String| {
            self.post_error_message(domain_error);
            gst::loggable_error!(CAT, "{}", text)
        };
        let info = gst_video::VideoInfo::from_caps(incaps).map_err(|_| {
            let text = format!("inferoverlay cannot handle caps {incaps}: feed raw video");
            fail(
                gst::error_msg!(gst::CoreError::Negotiation, ("{}", text)),
                text,
            )
        })?;
        let target = Target::new(&info).map_err(|e| {
            fail(
                gst::error_msg!(gst::CoreError::Negotiation, ("{}", e)),
                e.to_string(),
            )
        })?;
        let on_gpu = incaps
            .features(0)
            .is_some_and(|f| f.contains(CUDA_MEMORY_FEATURE));
        let backend = if on_gpu {
            let device_id = self.settings.lock().unwrap().device_id;
            let cuda = self.cuda_backend(device_id).map_err(|e| {
                fail(
                    gst::error_msg!(gst::LibraryError::Init, ("{}", e)),
                    e.to_string(),
                )
            })?;
            Backend::Cuda(cuda)
        } else {
            Backend::Cpu
        };
        gst::info!(
            CAT,
            imp = self,
            "drawing on {}x{} {:?} frames {}",
            info.width(),
            info.height(),
            info.format(),
            if on_gpu {
                "in CUDA memory"
            } else {
                "in system memory"
            }
        );
        *self.state.lock().unwrap() = Some(State {
            info,
            target,
            backend,
        });
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        // Read per frame: the style may change while playing.
        let style = self.settings.lock().unwrap().style;
        let state = self.state.lock().unwrap();
        let state = state.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
        let Some(found) = FrameDetections::from_buffer(buf) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let drawing = draw::layout(&found, &style, state.info.width(), state.info.height());
        // A frame with nothing to draw is not mapped for writing at all, so
        // it passes bit for bit (and its memory is not copied).
        if drawing.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let result = match &state.backend {
            Backend::Cpu => gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &state.info)
                .map_err(|_| OverlayError::MapFailed)
                .and_then(|mut frame| draw::cpu::draw(&mut frame, &state.target, &drawing)),
            Backend::Cuda(cuda) => gst_cuda::device_frame_mut(buf, &state.info)
                .map_err(OverlayError::Cuda)
                .and_then(|frame| cuda.draw(frame, &state.target, &drawing)),
        };
        result.map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
