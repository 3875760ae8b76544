//! `inferpublish`: writes each frame's inference results (those of a
//! trtinfer upstream, with a tracker's ids and a secondary classifier's
//! classes when present) as one JSON line to a file, stdout or an MQTT
//! broker. Metadata only: the frame passes through untouched, in system or
//! CUDA memory.

use gst::glib;
use gst::prelude::*;

mod credentials;
mod imp;
mod location;
mod mqtt;
mod queue;
pub mod record;
mod tls;

glib::wrapper! {
    pub struct InferPublish(ObjectSubclass<imp::InferPublish>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "inferpublish",
        gst::Rank::NONE,
        InferPublish::static_type(),
    )
}
