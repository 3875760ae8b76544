//! How cudapreprocess shares the pipeline's CUDA context: it takes one
//! given to it (`set_context`) on its own device, makes the device's
//! primary context when a CUDA element asks first, and checks that the
//! CUDA decoder upstream is on its device.

use std::sync::Arc;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::error::CudaInputError;
use super::imp::{CudaPreprocess, CAT};
use crate::cuda::gst_cuda::{self, CudaContext};
use crate::cuda::{self as gpu_mod, CudaError, Gpu};

impl CudaPreprocess {
    /// Takes the pipeline's CUDA context from `context` if it is one on
    /// our device; one on another device is ignored (our kernels run on
    /// device-id's primary context and could not read its frames).
    pub(super) fn take_pipeline_context(&self, context: &gst::Context) {
        if context.context_type() == gst_cuda::CONTEXT_TYPE {
            if let Some(given) = CudaContext::from_gst_context(self.obj().upcast_ref(), context) {
                let device_id = self.settings.lock().unwrap().device_id;
                if let Some(other) = given.device_id().filter(|&d| d != device_id) {
                    // Its frames could not be read by our kernels, which
                    // run on device-id's primary context.
                    gst::warning!(
                        CAT,
                        imp = self,
                        "ignoring the pipeline's CUDA context {:#x}: it is on CUDA device {other}, \
                         but device-id is {device_id}. Set device-id to {other} to work in it",
                        given.handle()
                    );
                    return;
                }
                gst::info!(
                    CAT,
                    imp = self,
                    "using the pipeline's CUDA context {:#x}",
                    given.handle()
                );
                *self.cuda_context.lock().unwrap() = Some(given);
            }
        }
    }

    /// The nearest CUDA element upstream that says which device it is on
    /// (`cuda-device-id`: nvcodec's decoders), through elements of one
    /// input (queue, capsfilter, identity) and bins' ghost pads: its name
    /// and device. `None` where nothing upstream says.
    pub(super) fn upstream_cuda_device(&self) -> Option<(String, u32)> {
        // Deep enough for any chain of queues and filters in front of us.
        const MAX_HOPS: usize = 16;
        let mut pad = self.obj().sink_pad().peer();
        for _ in 0..MAX_HOPS {
            let mut src = pad?;
            while let Some(target) = src.downcast_ref::<gst::GhostPad>().and_then(|g| g.target()) {
                src = target;
            }
            let element = src.parent_element()?;
            if let Some(device) = gpu_mod::placement::cuda_device_property(element.upcast_ref()) {
                return Some((element.name().to_string(), device));
            }
            let mut inputs = element.sink_pads().into_iter();
            pad = match (inputs.next(), inputs.next()) {
                (Some(only), None) => only.peer(),
                _ => return None,
            };
        }
        None
    }

    /// An error when the decoder upstream is on another GPU than
    /// `device_id`: its frames could not be read in our context.
    pub(super) fn check_upstream_device(&self, device_id: u32) -> Result<(), CudaInputError> {
        match self.upstream_cuda_device() {
            Some((decoder, other)) if other != device_id => Err(CudaInputError::UpstreamDevice {
                decoder,
                other,
                device_id,
                ours: gpu_mod::placement::conventional_decoder_name("h264", device_id),
            }),
            _ => Ok(()),
        }
    }

    /// The GPU for CUDA-memory input, with the pipeline's context made if
    /// no CUDA element has asked for it yet.
    pub(super) fn cuda_backend_gpu(&self, device_id: u32) -> Result<Arc<Gpu>, CudaInputError> {
        let gpu = gpu_mod::gpu(device_id as usize)
            .map_err(|source| CudaInputError::NoGpu { device_id, source })?;
        self.check_upstream_device(device_id)?;
        self.ensure_cuda_context(&gpu)?;
        Ok(gpu)
    }

    /// Makes the pipeline's CUDA context from `gpu`'s primary context
    /// unless one was given, and tells the pipeline about it.
    pub(super) fn ensure_cuda_context(&self, gpu: &Gpu) -> Result<(), CudaError> {
        let mut guard = self.cuda_context.lock().unwrap();
        if guard.is_some() {
            return Ok(());
        }
        let context = CudaContext::wrap_primary(gpu)?;
        gst::info!(
            CAT,
            imp = self,
            "providing the primary context {:#x} of CUDA device {} as the pipeline's gst.cuda.context",
            gpu.cu_context(),
            gpu.ordinal()
        );
        let gst_context = context.to_gst_context();
        *guard = Some(context);
        drop(guard);
        if let Some(c) = gst_context {
            let _ = self.obj().post_message(
                gst::message::HaveContext::builder(c)
                    .src(&*self.obj())
                    .build(),
            );
        }
        Ok(())
    }

    /// Answers a `gst.cuda.context` query (a CUDA decoder asking, at its
    /// NULL to READY), making the context on the first one. Without a GPU
    /// it is not answered and the decoder works as it would without us;
    /// nor is it when the decoder upstream is on another device (it would
    /// refuse our context, and set_caps says what to change).
    pub(super) fn answer_cuda_context_query(&self, query: &mut gst::QueryRef) -> bool {
        let device_id = self.settings.lock().unwrap().device_id;
        if let Some((name, other)) = self
            .upstream_cuda_device()
            .filter(|&(_, other)| other != device_id)
        {
            gst::info!(
                CAT,
                imp = self,
                "not offering the context of CUDA device {device_id} to {name}, which is on device {other}"
            );
            return false;
        }
        if self.cuda_context.lock().unwrap().is_none() {
            if !gpu_mod::device::driver_present() {
                return false;
            }
            let device_id = device_id as usize;
            if let Err(e) = gpu_mod::gpu(device_id).and_then(|g| self.ensure_cuda_context(&g)) {
                gst::warning!(CAT, imp = self, "cannot provide a CUDA context: {}", e);
                return false;
            }
        }
        let guard = self.cuda_context.lock().unwrap();
        guard
            .as_ref()
            .is_some_and(|c| c.answer_query(self.obj().upcast_ref(), query))
    }
}
