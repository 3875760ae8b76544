//! `trtinfer`: runs an ONNX model on the tensor `cudapreprocess` attached
//! to each frame and attaches its results (detections, classes or, with
//! `model-type=raw`, the raw outputs). The frame passes through unchanged.

use gst::glib;
use gst::prelude::*;

mod error_domains;
mod imp;
mod in_flight;
mod settings;

glib::wrapper! {
    pub struct TrtInfer(ObjectSubclass<imp::TrtInfer>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "trtinfer",
        gst::Rank::NONE,
        TrtInfer::static_type(),
    )
}
