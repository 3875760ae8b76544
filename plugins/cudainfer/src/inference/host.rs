//! The host path: tensors in host memory (or copied there) run through
//! ONNX Runtime's own inputs and outputs, and each image's outputs decoded
//! by its family on the CPU.

use std::sync::Arc;

use ort::value::DynTensor;

use super::{InferError, Model};
use crate::families::{DecodeLimits, FrameResult};
use crate::spec::ElementType;
use crate::tensor::Tensor;

impl Model {
    /// Runs the model on `tensors` from host memory and decodes each
    /// image's outputs with its own `limits` on the CPU.
    pub(super) fn run_on_host(
        &mut self,
        tensors: &[&Tensor],
        limits: &[DecodeLimits],
    ) -> Result<Vec<FrameResult>, InferError> {
        let item_len: usize = tensors[0].shape().iter().product();
        let mut data = Vec::with_capacity(item_len * tensors.len());
        for t in tensors {
            data.extend_from_slice(&t.to_host()?);
        }
        let mut shape = tensors[0].shape();
        // A fixed batch dimension takes exactly its size: pad with zero
        // items, whose outputs are not decoded (as on the GPU).
        shape[0] = self.fixed_batch().unwrap_or(tensors.len());
        data.resize(item_len * shape[0], 0.0);
        let input: DynTensor = match self.input_spec.element_type {
            ElementType::Float32 => {
                ort::value::Tensor::from_array((shape, data)).map(|t| t.upcast())
            }
            ElementType::Float16 => {
                let half: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
                ort::value::Tensor::from_array((shape, half)).map(|t| t.upcast())
            }
        }
        .map_err(|e| InferError::InputTensor(Arc::new(e)))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(|e| InferError::Run(Arc::new(e)))?;
        // Each output the family reads, with one image's length in it.
        // Float16 outputs are converted, so families decode float32 alone.
        let mut decoded: Vec<(std::borrow::Cow<'_, [f32]>, usize)> = Vec::new();
        for (used, element) in self.family.outputs().iter().zip(&self.output_elements) {
            let value = &outputs[used.index];
            let raw: std::borrow::Cow<'_, [f32]> = match element {
                ElementType::Float32 => value.try_extract_tensor::<f32>().map(|(_, r)| r.into()),
                ElementType::Float16 => value
                    .try_extract_tensor::<half::f16>()
                    .map(|(_, r)| r.iter().map(|v| v.to_f32()).collect::<Vec<_>>().into()),
            }
            .map_err(|e| InferError::OutputType {
                element: element.name(),
                source: Arc::new(e),
            })?;
            if raw.len() < used.values() * tensors.len() {
                return Err(InferError::OutputTooShort);
            }
            decoded.push((raw, used.values()));
        }
        Ok(limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let item: Vec<&[f32]> = decoded
                    .iter()
                    .map(|(raw, len)| &raw[i * len..(i + 1) * len])
                    .collect();
                self.family.decode_frame(&item, *l)
            })
            .collect())
    }
}
