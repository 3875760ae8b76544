//! `infertrack`: follows the objects a `trtinfer` upstream detects from
//! frame to frame (ByteTrack-style multi-object tracking on the CPU) and
//! gives each detection its track (id, age, state) in the Rust meta and
//! as the `tracking` param of its region-of-interest meta. Only metadata
//! changes; the frame, in system or CUDA memory, passes through.

use gst::glib;
use gst::prelude::*;

mod assign;
mod imp;
mod kalman;
mod tracker;

glib::wrapper! {
    pub struct InferTrack(ObjectSubclass<imp::InferTrack>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "infertrack",
        gst::Rank::NONE,
        InferTrack::static_type(),
    )
}
