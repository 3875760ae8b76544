//! The raw ONNX Runtime binding of GPU memory: tensors and output buffers
//! bound through the C API, where the safe binding would copy them (see
//! `bind_input`).

use cudarc::driver::DevicePtr;
use ort::value::{DynValueTypeMarker, Shape, TensorRefMut, ValueRefMut};
use ort::AsPointer;

use super::GpuRunner;
use crate::inference::error::{GpuError, OrtStatus};
use crate::spec::ElementType;

impl GpuRunner {
    /// Binds the borrowed device tensor as the input, through the C API:
    /// `IoBinding::bind_input` copies borrowed tensors (to guard against
    /// aliasing), and that device-to-device copy runs on CUDA's legacy
    /// default stream, which waits for the decoder's work and deadlocks
    /// inside nvh264dec's streaming thread. `input` must outlive the run.
    pub(super) fn bind_input(
        &mut self,
        input: &ValueRefMut<'_, DynValueTypeMarker>,
    ) -> Result<(), GpuError> {
        let name = self.input_name_c.clone();
        self.bind(true, &name, input)
            .map_err(GpuError::BindInput)
    }

    /// Binds `value` as the input or output `name` through the C API (see
    /// `bind_input`); ONNX Runtime keeps its own reference to the value's
    /// description, and the memory must outlive the runs.
    pub(super) fn bind(
        &mut self,
        input: bool,
        name: &std::ffi::CStr,
        value: &ValueRefMut<'_, DynValueTypeMarker>,
    ) -> Result<(), OrtStatus> {
        let api = ort::api();
        // SAFETY: valid binding, NUL-terminated name and value.
        unsafe {
            let bind = if input { api.BindInput } else { api.BindOutput };
            let status = bind(self.binding.ptr().cast_mut(), name.as_ptr(), value.ptr());
            if status.0.is_null() {
                return Ok(());
            }
            let message = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
                .to_string_lossy()
                .into_owned();
            (api.ReleaseStatus)(status.0);
            Err(OrtStatus(message))
        }
    }

    /// Wraps `len` bytes at `ptr` on our GPU as a tensor of `element` and
    /// `dims` for ONNX Runtime.
    ///
    /// # Safety
    /// `ptr` holds `dims` values of `element` for as long as ONNX Runtime
    /// may use the value.
    pub(super) unsafe fn wrap(
        &self,
        ptr: u64,
        element: ElementType,
        dims: Vec<i64>,
    ) -> Result<ValueRefMut<'static, DynValueTypeMarker>, GpuError> {
        let info = self.memory_info.clone();
        let data = ptr as usize as *mut _;
        let dims = Shape::new(dims);
        // SAFETY: as the caller promises.
        unsafe {
            match element {
                ElementType::Float32 => {
                    TensorRefMut::<f32>::from_raw(info, data, dims).map(|t| t.into_dyn())
                }
                ElementType::Float16 => {
                    TensorRefMut::<half::f16>::from_raw(info, data, dims).map(|t| t.into_dyn())
                }
            }
        }
        .map_err(GpuError::ort("cannot wrap GPU memory for ONNX Runtime"))
    }

    /// With a CUDA graph: our own buffer for each output, bound once, so
    /// that the replayed graph writes where it was captured writing.
    pub(super) fn bind_graph_outputs(&mut self, batch: usize) -> Result<(), GpuError> {
        let mut buffers = Vec::with_capacity(self.outputs.len());
        for (i, (name, dims)) in self.outputs.clone().iter().enumerate() {
            let element = if self.converted[i].is_some() {
                ElementType::Float16
            } else {
                ElementType::Float32
            };
            let shape: Vec<i64> = std::iter::once(batch)
                .chain(dims.iter().copied())
                .map(|d| d as i64)
                .collect();
            let len = shape.iter().product::<i64>() as usize * element.size();
            let buffer =
                self.stream
                    .alloc_zeros::<u8>(len)
                    .map_err(|source| GpuError::OutputAlloc {
                        name: name.clone(),
                        source,
                    })?;
            let ptr = buffer.device_ptr(&self.stream).0;
            // SAFETY: `buffer` holds `shape` values of `element` and lives
            // in `graph_outputs` as long as the binding.
            let value = unsafe { self.wrap(ptr, element, shape)? };
            let name_c = std::ffi::CString::new(name.as_str())
                .map_err(|_| GpuError::OutputNameNul { name: name.clone() })?;
            self.bind(false, &name_c, &value)
                .map_err(|source| GpuError::BindOutput {
                    name: name.clone(),
                    source,
                })?;
            buffers.push(buffer);
        }
        self.graph_outputs = buffers;
        Ok(())
    }
}
