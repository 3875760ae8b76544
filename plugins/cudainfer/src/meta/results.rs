//! Writing and removing a frame's whole result: the project's own meta,
//! the region-of-interest metas, the raw outputs and the GstAnalytics
//! relation meta. Here rather than in `detections` so that the data model
//! does not import the metas built from it (`analytics` reads
//! `detections`).

use super::analytics;
use super::custom_meta;
use super::detections::{
    add_roi, class_param, DetectionsHandle, FrameDetections, ADDED_RELATION_META,
    CLASSIFICATION_PARAM, DETECTION_PARAM, META_NAME, TRACKING_PARAM,
};
use super::raw_outputs::RawTensor;
use std::sync::Arc;

impl FrameDetections {
    /// Removes the results of an earlier `trtinfer` (its meta, its
    /// region-of-interest metas, its raw outputs and the GstAnalytics
    /// relation meta it added); true if there were any.
    pub fn remove_from(buffer: &mut gst::BufferRef) -> bool {
        let added_relation_meta =
            custom_meta::get_field::<bool>(buffer, META_NAME, ADDED_RELATION_META);
        if !custom_meta::remove(buffer, META_NAME) {
            return false;
        }
        if added_relation_meta == Some(true) {
            analytics::remove(buffer);
        }
        RawTensor::remove_from(buffer);
        buffer.foreach_meta_mut(|mut meta| {
            let ours = meta
                .downcast_ref::<gst_video::VideoRegionOfInterestMeta>()
                .is_some_and(|roi| {
                    roi.param(DETECTION_PARAM).is_some()
                        || roi.param(CLASSIFICATION_PARAM).is_some()
                });
            std::ops::ControlFlow::Continue(if ours {
                gst::buffer::BufferMetaForeachAction::Remove
            } else {
                gst::buffer::BufferMetaForeachAction::Keep
            })
        });
        true
    }

    /// Attaches the result: one region-of-interest meta per object and per
    /// class (ids 0..n-1 across both), the raw outputs meta if there are
    /// raw outputs, on GStreamer >= 1.24 the same in a GstAnalytics relation
    /// meta (see [`analytics`]), and the whole result as the project's own
    /// meta.
    pub fn attach(self, buffer: &mut gst::BufferRef) {
        if !self.raw_outputs.is_empty() {
            RawTensor::attach(&self.raw_outputs, buffer);
        }
        let mut id = 0;
        let added_relation_meta = analytics::attach(&self, buffer);
        for d in &self.detections {
            let rect = d.pixel_box();
            let mut roi = add_roi(
                buffer,
                id,
                DETECTION_PARAM,
                &d.label,
                d.class_id,
                d.confidence,
                rect,
            );
            id += 1;
            if let Some(top) = d.classifications.first() {
                roi.add_param(class_param(
                    CLASSIFICATION_PARAM,
                    &top.label,
                    top.class_id,
                    top.confidence,
                ));
            }
            if let Some(track) = d.track {
                roi.add_param(
                    gst::Structure::builder(TRACKING_PARAM)
                        .field("id", track.id)
                        .field("age", track.age)
                        .field("state", track.state.as_str())
                        .field("predicted", d.predicted)
                        .build(),
                );
            }
        }
        let frame = (0, 0, self.frame_width, self.frame_height);
        for c in &self.classifications {
            add_roi(
                buffer,
                id,
                CLASSIFICATION_PARAM,
                &c.label,
                c.class_id,
                c.confidence,
                frame,
            );
            id += 1;
        }
        custom_meta::set(buffer, META_NAME, DetectionsHandle(Arc::new(self)));
        if added_relation_meta {
            custom_meta::set_field(buffer, META_NAME, ADDED_RELATION_META, true);
        }
    }
}
