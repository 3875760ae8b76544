//! The tensor `cudapreprocess` attaches to each frame, carried as a GStreamer
//! custom meta named `GstCudaInferTensorMeta`, and the crops of a frame's
//! objects (`GstCudaInferObjectTensorsMeta`).

use std::sync::Arc;

use super::custom_meta;
use crate::tensor::{ObjectTensor, Tensor};

const META_NAME: &str = "GstCudaInferTensorMeta";

#[derive(Clone, Debug, glib::Boxed)]
#[boxed_type(name = "GstCudaInferTensor")]
struct TensorHandle(Arc<Tensor>);

/// Registers the meta; called once, at plugin load.
pub fn register() {
    custom_meta::register(META_NAME);
    custom_meta::register(OBJECTS_META_NAME);
}

/// Attaches `tensor` to `buffer`, replacing a tensor already there (a second
/// cudapreprocess in the chain wins).
pub fn attach(buffer: &mut gst::BufferRef, tensor: Arc<Tensor>) {
    custom_meta::set(buffer, META_NAME, TensorHandle(tensor));
}

/// The tensor attached to `buffer`, if any.
pub fn get(buffer: &gst::BufferRef) -> Option<Arc<Tensor>> {
    custom_meta::get::<TensorHandle>(buffer, META_NAME).map(|h| h.0)
}

/// Takes the tensor off `buffer` (once inference is done with it), so that
/// neither the GPU tensor nor the decoder's frame is held for as long as
/// downstream keeps the buffer.
pub fn remove(buffer: &mut gst::BufferRef) -> bool {
    custom_meta::remove(buffer, META_NAME)
}

const OBJECTS_META_NAME: &str = "GstCudaInferObjectTensorsMeta";

#[derive(Clone, Debug, glib::Boxed)]
#[boxed_type(name = "GstCudaInferObjectTensors")]
struct ObjectTensorsHandle(Arc<Vec<ObjectTensor>>);

/// Attaches the crops of a frame's objects (possibly none: the frame was
/// looked at and had no object to classify), replacing any there.
pub fn attach_objects(buffer: &mut gst::BufferRef, tensors: Vec<ObjectTensor>) {
    custom_meta::set(
        buffer,
        OBJECTS_META_NAME,
        ObjectTensorsHandle(Arc::new(tensors)),
    );
}

/// The crops attached to `buffer`, if any.
pub fn get_objects(buffer: &gst::BufferRef) -> Option<Arc<Vec<ObjectTensor>>> {
    custom_meta::get::<ObjectTensorsHandle>(buffer, OBJECTS_META_NAME).map(|h| h.0)
}

/// Takes the crops off `buffer` once inference is done with them.
pub fn remove_objects(buffer: &mut gst::BufferRef) -> bool {
    custom_meta::remove(buffer, OBJECTS_META_NAME)
}
