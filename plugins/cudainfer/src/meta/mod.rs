//! The metadata the elements put on buffers and applications read: the
//! results ([`detections`], with the raw outputs of `model-type=raw` in
//! [`raw_outputs`] and the same results as GStreamer's analytics metas in
//! [`analytics`]), the tensor `cudapreprocess` hands to `trtinfer`
//! (`tensor_meta`) and the custom-meta helpers they are all built on.
//!
//! Imports go one way: `custom_meta` ← `raw_outputs` ← `detections` ←
//! `analytics` ← `results` (which writes and removes a frame's whole
//! result).

pub mod analytics;
pub(crate) mod custom_meta;
pub mod detections;
pub mod raw_outputs;
mod results;

internal_modules!(tensor_meta);
