//! `inferoverlay`: draws each object's box and label (class, confidence,
//! track id, the top class of its crop) on the frame, in place, in system
//! memory on the CPU or in CUDA memory with a CUDA kernel (see
//! [`draw`]).

use gst::glib;
use gst::prelude::*;

pub(crate) mod draw;
mod imp;

glib::wrapper! {
    pub struct InferOverlay(ObjectSubclass<imp::InferOverlay>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "inferoverlay",
        gst::Rank::NONE,
        InferOverlay::static_type(),
    )
}
