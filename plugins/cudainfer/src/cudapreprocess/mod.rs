//! `cudapreprocess`: turns each video frame into a model-ready tensor
//! (resize, letterbox, colour order, normalisation; NCHW float32, or
//! float16 in CUDA memory for a float16 model) and
//! attaches it as a meta; the frame itself passes through unchanged.
//! The model's input spec is learnt from a downstream `trtinfer`;
//! properties override it. With `mode=objects` it crops the objects a
//! detector upstream found, one tensor each, for a classifier downstream.

use gst::glib;
use gst::prelude::*;

mod cuda_context;
mod error;
mod imp;
mod objects;
mod settings;

glib::wrapper! {
    pub struct CudaPreprocess(ObjectSubclass<imp::CudaPreprocess>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "cudapreprocess",
        gst::Rank::NONE,
        CudaPreprocess::static_type(),
    )
}
