use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::error::FrameError;
use super::objects::ObjectFilter;
use super::settings::{Mode, Settings, DEFAULT_MAX_OBJECTS, DEFAULT_MIN_OBJECT_SIZE};
use crate::cuda::gst_cuda::{self, CudaContext};
use crate::cuda::{self as gpu_mod};
use crate::meta::tensor_meta;
use crate::preprocess::cpu::{self, CpuPreprocessor};
use crate::preprocess::cuda::CudaPreprocessor;
use crate::preprocess::{Plan, Region, SUPPORTED_FORMATS};
use crate::properties::{may_change_now, MUTABLE_PLAYING, MUTABLE_READY};
use crate::spec::{self, ChannelOrder, InputSpec, ResizeMode};
use crate::tensor::{ObjectTensor, Tensor};
use crate::{FrameDetections, CUDA_MEMORY_FEATURE};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "cudapreprocess",
        gst::DebugColorFlags::empty(),
        Some("Frame to model tensor pre-processing"),
    )
});

// One per element, made per caps: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Cpu(CpuPreprocessor),
    Cuda(CudaPreprocessor),
}

struct State {
    info: gst_video::VideoInfo,
    backend: Backend,
    /// The plan of the whole frame; crops are planned from its spec.
    plan: Plan,
}

#[derive(Default)]
pub struct CudaPreprocess {
    pub(super) settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The pipeline's `gst.cuda.context`: given to us, or made by us (the
    /// device's primary context) when a CUDA element first asks.
    pub(super) cuda_context: Mutex<Option<CudaContext>>,
}

#[glib::object_subclass]
impl ObjectSubclass for CudaPreprocess {
    const NAME: &'static str = "GstCudaPreprocess";
    type Type = super::CudaPreprocess;
    type ParentType = gst_base::BaseTransform;
}

fn float_array(value: &glib::Value) -> Vec<f32> {
    value
        .get::<gst::Array>()
        .expect("type checked upstream")
        .iter()
        .filter_map(|v| {
            v.get::<f64>()
                .ok()
                .map(|f| f as f32)
                .or_else(|| v.get::<f32>().ok())
        })
        .collect()
}

impl ObjectImpl for CudaPreprocess {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let float_spec = glib::ParamSpecDouble::builder("value").build();
            // mean and std validate laxly: GLib would drop a NaN or infinity
            // with a console warning and run on; set_caps refuses them with
            // an element error instead.
            vec![
                glib::ParamSpecEnum::builder_with_default("mode", Mode::Frame)
                    .nick("Mode")
                    .blurb("frame: one tensor of the whole frame; objects: one tensor per object that a \
                            trtinfer detector upstream found (crops, for a trtinfer model-type=classifier \
                            downstream, which puts its classes on each object)")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecString::builder("object-classes")
                    .nick("Object classes")
                    .blurb("mode=objects: the objects to crop, comma-separated labels or class ids \
                            (e.g. \"person,car\" or \"0,2\"); empty: every object")
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecUInt::builder("min-object-size")
                    .nick("Minimum object size")
                    .blurb("mode=objects: objects narrower or lower than this many pixels are not cropped")
                    .default_value(DEFAULT_MIN_OBJECT_SIZE)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecUInt::builder("max-objects")
                    .nick("Maximum objects")
                    .blurb("mode=objects: at most this many objects of a frame are cropped, the most \
                            confident first")
                    .minimum(1)
                    .maximum(4096)
                    .default_value(DEFAULT_MAX_OBJECTS)
                    .flags(MUTABLE_PLAYING)
                    .build(),
                glib::ParamSpecUInt::builder("width")
                    .nick("Tensor width")
                    .blurb("Width of the tensor in pixels (at most 8192; a model downstream must want the same); \
                            0: as the model downstream wants")
                    .maximum(16384)
                    .default_value(0)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("height")
                    .nick("Tensor height")
                    .blurb("Height of the tensor in pixels (at most 8192; a model downstream must want the same); \
                            0: as the model downstream wants")
                    .maximum(16384)
                    .default_value(0)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecEnum::builder_with_default("resize-mode", ResizeMode::Auto)
                    .nick("Resize mode")
                    .blurb("How the frame is fitted into the tensor")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecEnum::builder_with_default("channel-order", ChannelOrder::Auto)
                    .nick("Channel order")
                    .blurb("Order of the colour planes in the tensor")
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecDouble::builder("pixel-scale")
                    .nick("Pixel scale")
                    .blurb("Factor applied to 0..255 pixel values before mean and std (1/255 for 0..1 input); \
                            0: as the model downstream wants")
                    .minimum(0.0)
                    .maximum(1000.0)
                    .default_value(0.0)
                    .flags(MUTABLE_READY)
                    .build(),
                gst::ParamSpecArray::builder("mean")
                    .nick("Mean")
                    .blurb("Per-channel mean subtracted after scaling, 1 or 3 values in tensor channel order, \
                            e.g. \"<0.485, 0.456, 0.406>\"; empty: as the model downstream wants")
                    .element_spec(&float_spec)
                    .flags(MUTABLE_READY | glib::ParamFlags::LAX_VALIDATION)
                    .build(),
                gst::ParamSpecArray::builder("std")
                    .nick("Standard deviation")
                    .blurb("Per-channel divisor applied after the mean, 1 or 3 values; empty: as the model downstream wants")
                    .element_spec(&float_spec)
                    .flags(MUTABLE_READY | glib::ParamFlags::LAX_VALIDATION)
                    .build(),
                glib::ParamSpecInt::builder("pad-value")
                    .nick("Pad value")
                    .blurb("Pixel value (0..255, before normalisation) of the letterbox padding; -1: as the model downstream wants")
                    .minimum(-1)
                    .maximum(255)
                    .default_value(-1)
                    .flags(MUTABLE_READY)
                    .build(),
                glib::ParamSpecUInt::builder("device-id")
                    .nick("CUDA device")
                    .blurb("GPU for CUDA-memory video. cudapreprocess gives the pipeline this device's primary \
                            CUDA context (shared with the decoder and ONNX Runtime)")
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
            "mode" => s.mode = value.get().expect("type checked upstream"),
            "object-classes" => {
                s.object_classes = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "min-object-size" => s.min_object_size = value.get().expect("type checked upstream"),
            "max-objects" => s.max_objects = value.get().expect("type checked upstream"),
            "width" => s.width = value.get().expect("type checked upstream"),
            "height" => s.height = value.get().expect("type checked upstream"),
            "resize-mode" => s.resize_mode = value.get().expect("type checked upstream"),
            "channel-order" => s.channel_order = value.get().expect("type checked upstream"),
            "pixel-scale" => s.pixel_scale = value.get().expect("type checked upstream"),
            "mean" => s.mean = float_array(value),
            "std" => s.std = float_array(value),
            "pad-value" => s.pad_value = value.get().expect("type checked upstream"),
            "device-id" => s.device_id = value.get().expect("type checked upstream"),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let array = |v: &[f32]| gst::Array::new(v.iter().map(|&f| f as f64)).to_value();
        match pspec.name() {
            "mode" => s.mode.to_value(),
            "object-classes" => s.object_classes.to_value(),
            "min-object-size" => s.min_object_size.to_value(),
            "max-objects" => s.max_objects.to_value(),
            "width" => s.width.to_value(),
            "height" => s.height.to_value(),
            "resize-mode" => s.resize_mode.to_value(),
            "channel-order" => s.channel_order.to_value(),
            "pixel-scale" => s.pixel_scale.to_value(),
            "mean" => array(&s.mean),
            "std" => array(&s.std),
            "pad-value" => s.pad_value.to_value(),
            "device-id" => s.device_id.to_value(),
            _ => unreachable!("unknown property {}", pspec.name()),
        }
    }
}

impl GstObjectImpl for CudaPreprocess {}

impl ElementImpl for CudaPreprocess {
    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        // A decoder that an autoplugging bin (uridecodebin, decodebin3)
        // adds later is not linked to us when it asks for its CUDA context:
        // its query cannot reach us and its bus message finds no answer.
        // Posting the context at READY lets the pipeline keep it and hand
        // it to such a decoder. Without a GPU nothing happens.
        if transition == gst::StateChange::NullToReady
            && self.cuda_context.lock().unwrap().is_none()
            && gpu_mod::device::driver_present()
        {
            let device_id = self.settings.lock().unwrap().device_id as usize;
            if let Err(e) = gpu_mod::gpu(device_id).and_then(|g| self.ensure_cuda_context(&g)) {
                gst::debug!(CAT, imp = self, "no CUDA context to offer yet: {}", e);
            }
        }
        self.parent_change_state(transition)
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Model input pre-processing",
                "Filter/Converter/Video",
                "Attaches a model-ready NCHW tensor to each frame (resized, letterboxed or stretched, \
                 normalised; float32, or float16 in CUDA memory for a float16 model), or with \
                 mode=objects one per object a detector upstream found; learns the model's input \
                 from a downstream trtinfer",
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

    fn set_context(&self, context: &gst::Context) {
        self.take_pipeline_context(context);
        self.parent_set_context(context)
    }
}

impl CudaPreprocess {
    /// Asks downstream (trtinfer) for the model's input spec.
    fn learn_input_spec(&self) -> Option<InputSpec> {
        let mut query = spec::new_input_spec_query();
        if !self.obj().src_pad().peer_query(&mut query) {
            gst::debug!(
                CAT,
                imp = self,
                "no element downstream answered the input-spec query"
            );
            return None;
        }
        let learnt = spec::parse_input_spec_answer(&query);
        gst::debug!(CAT, imp = self, "downstream wants {:?}", learnt);
        learnt
    }

    fn unsupported_caps_message(caps: &gst::CapsRef) -> String {
        format!(
            "cudapreprocess cannot handle {caps}: it takes raw video in system or CUDA memory as {}. \
             Put videoconvert (system memory) before it",
            SUPPORTED_FORMATS
                .iter()
                .map(|f| f.to_str().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Whether `caps` describe raw video that no pad of ours accepts.
    fn is_unsupported_raw_video(&self, caps: &gst::CapsRef) -> bool {
        let template = self.obj().sink_pad().pad_template_caps();
        !caps.is_empty()
            && caps.iter().all(|s| s.name() == "video/x-raw")
            && !caps.can_intersect(&template)
    }

    /// Posts `e` as an element error of `domain` and returns it for the log.
    fn caps_failed<T: gst::MessageErrorDomain>(
        &self,
        domain: T,
        e: &dyn std::fmt::Display,
    ) -> gst::LoggableError {
        gst::element_imp_error!(self, domain, ("{}", e));
        gst::loggable_error!(CAT, "{}", e)
    }
}

impl CudaPreprocess {
    /// mode=objects: one tensor per chosen object of the detections
    /// upstream attached, each made of the object's box as the whole frame
    /// would be (same spec, same kernels).
    fn crop_objects(
        state: &State,
        filter: &ObjectFilter,
        buf: &gst::BufferRef,
    ) -> Result<Vec<ObjectTensor>, FrameError> {
        let Some(found) = FrameDetections::from_buffer(buf) else {
            return Err(FrameError::NoDetections);
        };
        let mut chosen = Vec::new();
        let mut plans = Vec::new();
        for index in filter.select(&found.detections) {
            let d = &found.detections[index];
            if let Some(region) = Region::around([d.x, d.y, d.width, d.height], &state.info) {
                plans.push(Plan::for_region(&state.info, &state.plan.spec, region)?);
                chosen.push(index);
            }
        }
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let tensors: Vec<Tensor> = match &state.backend {
            Backend::Cpu(_) => {
                let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &state.info)
                    .map_err(|_| FrameError::Map)?;
                plans
                    .iter()
                    .map(|plan| cpu::run_plan(plan, &frame))
                    .collect::<Result<_, _>>()?
            }
            Backend::Cuda(pre) => {
                pre.run_regions(gst_cuda::device_frame(buf, &state.info)?, &plans)?
            }
        };
        Ok(chosen
            .into_iter()
            .zip(tensors)
            .map(|(object, tensor)| ObjectTensor {
                object,
                tensor: Arc::new(tensor),
            })
            .collect())
    }
}

impl BaseTransformImpl for CudaPreprocess {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Caps(c) = event.view() {
            if self.is_unsupported_raw_video(c.caps()) {
                let msg = Self::unsupported_caps_message(c.caps());
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{}", msg));
                return false;
            }
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Context(q) = query.view_mut() {
            if q.context_type() == gst_cuda::CONTEXT_TYPE && self.answer_cuda_context_query(query) {
                return true;
            }
        }
        let handled = BaseTransformImplExt::parent_query(self, direction, query);
        // Upstream offering raw video we cannot take usually ends in a bare
        // not-negotiated error; say why while we know it. A warning, since
        // upstream may still try other caps.
        if direction == gst::PadDirection::Sink {
            let refused = match query.view() {
                gst::QueryView::Caps(q) if q.result().is_some_and(|r| r.is_empty()) => {
                    q.filter_owned()
                }
                gst::QueryView::AcceptCaps(q) if !q.result() => Some(q.caps_owned()),
                _ => None,
            };
            if let Some(caps) = refused.filter(|c| self.is_unsupported_raw_video(c)) {
                gst::element_imp_warning!(
                    self,
                    gst::CoreError::Negotiation,
                    ("{}", Self::unsupported_caps_message(&caps))
                );
            }
        }
        handled
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let negotiation =
            |e: &dyn std::fmt::Display| self.caps_failed(gst::CoreError::Negotiation, e);
        let info = gst_video::VideoInfo::from_caps(incaps).map_err(|_| {
            negotiation(&format_args!(
                "cannot handle caps {incaps}: feed raw video in one of {SUPPORTED_FORMATS:?}"
            ))
        })?;
        let learnt = self.learn_input_spec();
        let settings = self.settings.lock().unwrap().clone();
        let spec = settings
            .resolve(learnt.as_ref())
            .map_err(|e| negotiation(&e))?;
        gst::info!(
            CAT,
            imp = self,
            "{}x{} {:?} frames to tensor {:?}",
            info.width(),
            info.height(),
            info.format(),
            spec
        );
        let plan = Plan::new(&info, &spec).map_err(|e| negotiation(&e))?;
        let on_gpu = incaps
            .features(0)
            .is_some_and(|f| f.contains(CUDA_MEMORY_FEATURE));
        let backend = if on_gpu {
            let pre = self
                .cuda_backend_gpu(settings.device_id)
                .and_then(|gpu| Ok(CudaPreprocessor::new(gpu, plan.clone())?))
                .map_err(|e| self.caps_failed(gst::LibraryError::Init, &e))?;
            Backend::Cuda(pre)
        } else {
            Backend::Cpu(CpuPreprocessor::new(plan.clone()))
        };
        *self.state.lock().unwrap() = Some(State {
            info,
            backend,
            plan,
        });
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let fail = |e: FrameError| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
            gst::FlowError::Error
        };
        // The object filter's properties change while playing: read them
        // per frame, without copying the rest of the settings.
        let filter = {
            let s = self.settings.lock().unwrap();
            (s.mode == Mode::Objects).then(|| {
                ObjectFilter::new(&s.object_classes, s.min_object_size, s.max_objects as usize)
            })
        };
        let state = self.state.lock().unwrap();
        let state = state.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
        if let Some(filter) = filter {
            let crops = Self::crop_objects(state, &filter, buf).map_err(fail)?;
            // One kind of input per frame: the last cudapreprocess says
            // what the next trtinfer runs on.
            tensor_meta::remove(buf);
            tensor_meta::attach_objects(buf, crops);
            return Ok(gst::FlowSuccess::Ok);
        }
        let make = || -> Result<Tensor, FrameError> {
            Ok(match &state.backend {
                Backend::Cpu(pre) => {
                    let frame =
                        gst_video::VideoFrameRef::from_buffer_ref_readable(&*buf, &state.info)
                            .map_err(|_| FrameError::Map)?;
                    pre.run(&frame)?
                }
                Backend::Cuda(pre) => pre.run(gst_cuda::device_frame(buf, &state.info)?)?,
            })
        };
        let tensor = make().map_err(fail)?;
        tensor_meta::remove_objects(buf);
        tensor_meta::attach(buf, Arc::new(tensor));
        Ok(gst::FlowSuccess::Ok)
    }
}
