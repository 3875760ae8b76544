//! The model's outputs themselves on buffers (`model-type=raw`), for
//! applications that parse them on their own.
//!
//! `trtinfer` adds a `GstCudaInferRawOutputsMeta` custom meta whose
//! structure has the field `outputs`: a `GstValueArray` with one `output`
//! structure per model output, in the model's order, with `name` (string),
//! `shape` (`GstValueArray` of guint64: the model's shape with the batch
//! dimension 1, as if the frame had run alone) and `data` (`GBytes` of
//! float32, little-endian, row-major). Plain GstStructure fields, so C and
//! Python read them with stock APIs; Rust applications get them as
//! [`RawTensor`]s from [`RawTensor::from_buffer`].

use super::custom_meta;

const META_NAME: &str = "GstCudaInferRawOutputsMeta";
const OUTPUTS_FIELD: &str = "outputs";
const OUTPUT_STRUCTURE: &str = "output";

/// One model output, one frame's part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// The output's name in the model.
    pub name: String,
    /// The model's shape of the output with the batch dimension 1.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f32>,
}

/// Registers the meta; called once, at plugin load.
pub fn register() {
    custom_meta::register(META_NAME);
}

impl RawTensor {
    /// The outputs `trtinfer model-type=raw` attached to `buffer`, in the
    /// model's order.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<Vec<RawTensor>> {
        let outputs: gst::Array = custom_meta::get_field(buffer, META_NAME, OUTPUTS_FIELD)?;
        outputs
            .iter()
            .map(|v| Self::from_structure(v.get::<&gst::StructureRef>().ok()?))
            .collect()
    }

    fn from_structure(s: &gst::StructureRef) -> Option<RawTensor> {
        let shape = s
            .get::<gst::Array>("shape")
            .ok()?
            .iter()
            .map(|d| d.get::<u64>().ok().map(|d| d as usize))
            .collect::<Option<Vec<usize>>>()?;
        let bytes = s.get::<glib::Bytes>("data").ok()?;
        let data = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4")))
            .collect();
        Some(RawTensor {
            name: s.get::<String>("name").ok()?,
            shape,
            data,
        })
    }

    fn to_structure(&self) -> gst::Structure {
        let shape = gst::Array::new(self.shape.iter().map(|&d| d as u64));
        let data: Vec<u8> = self.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        gst::Structure::builder(OUTPUT_STRUCTURE)
            .field("name", &self.name)
            .field("shape", shape)
            .field("data", glib::Bytes::from_owned(data))
            .build()
    }

    /// Attaches `tensors` as the raw outputs meta.
    pub(crate) fn attach(tensors: &[RawTensor], buffer: &mut gst::BufferRef) {
        let outputs = gst::Array::new(tensors.iter().map(Self::to_structure));
        custom_meta::set_field(buffer, META_NAME, OUTPUTS_FIELD, outputs);
    }

    /// Removes the raw outputs of an earlier `trtinfer`; true if there were
    /// any.
    pub(crate) fn remove_from(buffer: &mut gst::BufferRef) -> bool {
        custom_meta::remove(buffer, META_NAME)
    }
}
