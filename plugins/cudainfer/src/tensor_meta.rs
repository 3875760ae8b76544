//! The tensor `cudapreprocess` attaches to each frame, carried as a GStreamer
//! custom meta named `GstCudaInferTensorMeta`.

use std::sync::Arc;

use crate::custom_meta;

const META_NAME: &str = "GstCudaInferTensorMeta";

/// Affine map between frame pixels and tensor pixels:
/// `tensor = frame * scale + offset`, per axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameTransform {
    pub scale_x: f32,
    pub scale_y: f32,
    pub offset_x: f32,
    pub offset_y: f32,
    pub frame_width: u32,
    pub frame_height: u32,
}

impl FrameTransform {
    /// Maps a tensor-space point back to frame pixels.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.offset_x) / self.scale_x,
            (y - self.offset_y) / self.scale_y,
        )
    }
}

/// Where the tensor's values live.
#[derive(Debug)]
pub enum TensorStorage {
    /// Host memory, used for system-memory video.
    Host(Vec<f32>),
    /// GPU memory, used for CUDA-memory video.
    Device(crate::cuda::DeviceTensor),
}

/// One model-ready input tensor, NCHW with N = 1: float32 on the host; on
/// the GPU of the model's element type (float16 for an fp16 model).
#[derive(Debug)]
pub struct Tensor {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub storage: TensorStorage,
    pub transform: FrameTransform,
}

impl Tensor {
    pub fn shape(&self) -> [usize; 4] {
        [1, self.channels, self.height, self.width]
    }

    pub fn host_data(&self) -> Option<&[f32]> {
        match &self.storage {
            TensorStorage::Host(v) => Some(v),
            TensorStorage::Device(_) => None,
        }
    }

    /// The values in host memory as float32, copied (and converted) from
    /// the GPU where they are there.
    pub fn to_host(&self) -> Result<std::borrow::Cow<'_, [f32]>, String> {
        match &self.storage {
            TensorStorage::Host(v) => Ok(v.as_slice().into()),
            TensorStorage::Device(d) => d.download().map(Into::into),
        }
    }
}

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

/// One object's crop as a model input (`cudapreprocess mode=objects`).
#[derive(Debug)]
pub struct ObjectTensor {
    /// Index of the object in the frame's `FrameDetections::detections`.
    pub object: usize,
    pub tensor: Arc<Tensor>,
}

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
