//! Device tensors: float32 or float16 buffers on the GPU (kept as bytes with
//! their element type, as the model takes either), each with the event that
//! marks it written, taken from a pool so that no allocation (of memory or
//! of a driver event) happens per frame, returned to it when the last
//! reference to the tensor (its meta on the buffer, a batcher) goes.

use std::sync::{Arc, Mutex, Weak};

use cudarc::driver::{CudaEvent, CudaSlice, DevicePtr};

use super::{CudaError, Gpu};
use crate::spec::ElementType;

/// A buffer and the event recorded after the work that last wrote it.
struct Slot {
    slice: CudaSlice<u8>,
    written: CudaEvent,
}

type FreeList = Mutex<Vec<Slot>>;

/// Buffers of `len` values of one element type on one GPU.
pub struct TensorPool {
    gpu: Arc<Gpu>,
    len: usize,
    element_type: ElementType,
    free: Arc<FreeList>,
}

impl TensorPool {
    pub fn new(gpu: Arc<Gpu>, len: usize, element_type: ElementType) -> Self {
        Self {
            gpu,
            len,
            element_type,
            free: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A buffer from the pool, or a new one when all are in use.
    pub fn take(&self) -> Result<PooledBuffer, CudaError> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let slot = match reused {
            Some(slot) => slot,
            None => self.new_slot()?,
        };
        Ok(PooledBuffer {
            slot: Some(slot),
            element_type: self.element_type,
            home: Arc::downgrade(&self.free),
        })
    }

    fn new_slot(&self) -> Result<Slot, CudaError> {
        let stream = self.gpu.stream();
        // SAFETY: every element is written by the kernel before use.
        let bytes = self.len * self.element_type.size();
        let slice = unsafe { stream.alloc::<u8>(bytes) }
            .map_err(|source| CudaError::Alloc { bytes, source })?;
        let written = stream
            .context()
            .new_event(None)
            .map_err(CudaError::driver("cannot create a CUDA event"))?;
        Ok(Slot { slice, written })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
}

/// A pool buffer; goes back to its pool on drop (or is freed if the pool is
/// gone, after a caps change).
pub struct PooledBuffer {
    slot: Option<Slot>,
    element_type: ElementType,
    home: Weak<FreeList>,
}

impl PooledBuffer {
    fn slot(&self) -> &Slot {
        self.slot.as_ref().expect("present until drop")
    }

    /// The values' bytes.
    pub fn slice(&self) -> &CudaSlice<u8> {
        &self.slot().slice
    }

    pub fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.slot.as_mut().expect("present until drop").slice
    }

    /// The buffer's event, recorded after the work that writes it.
    fn written(&self) -> &CudaEvent {
        &self.slot().written
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(slot), Some(home)) = (self.slot.take(), self.home.upgrade()) {
            home.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
        }
    }
}

/// A tensor in GPU memory, written by work queued on the GPU's stream.
/// Its buffer's event completes when it is written; work on the same stream
/// is ordered after it anyway. It keeps the source frame mapped until then,
/// so that the decoder cannot reuse that memory while the kernel still
/// reads it: until [`DeviceTensor::release_source`], or drop.
pub struct DeviceTensor {
    buffer: PooledBuffer,
    gpu: Arc<Gpu>,
    /// Behind a lock so that holders of a shared tensor can let the frame
    /// go as soon as the kernel is done, not when the last holder drops it.
    source: Mutex<Option<Arc<super::gst_cuda::MappedCudaMemory>>>,
}

impl std::fmt::Debug for DeviceTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTensor")
            .field("gpu", &self.gpu.ordinal())
            .field("len", &self.len())
            .field("element_type", &self.element_type())
            .finish()
    }
}

impl DeviceTensor {
    /// Wraps `buffer` once the work that fills it has been queued.
    pub fn new(
        buffer: PooledBuffer,
        gpu: Arc<Gpu>,
        source: Option<Arc<super::gst_cuda::MappedCudaMemory>>,
    ) -> Result<Self, CudaError> {
        // The buffer's previous tensor waited for this event before the
        // buffer came back to the pool, so it can be recorded again.
        buffer
            .written()
            .record(gpu.stream())
            .map_err(CudaError::driver("cannot record a CUDA event"))?;
        Ok(Self {
            buffer,
            gpu,
            source: Mutex::new(source),
        })
    }

    /// Unmaps the source frame once the kernel that reads it is done
    /// (waits for that on the host; free once the stream has been
    /// synchronised past it). Idempotent. On error the frame stays mapped,
    /// and drop tries again.
    pub fn release_source(&self) -> Result<(), CudaError> {
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        if source.is_none() {
            return Ok(());
        }
        self.buffer
            .written()
            .synchronize()
            .map_err(CudaError::driver(
                "cannot wait for the pre-processing kernel",
            ))?;
        source.take();
        Ok(())
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Makes work queued on `stream` from now on wait until the tensor is
    /// written (no host wait): for readers on another stream than the
    /// GPU's shared one.
    pub fn ready_on(&self, stream: &cudarc::driver::CudaStream) -> Result<(), CudaError> {
        stream
            .wait(self.buffer.written())
            .map_err(CudaError::driver(
                "cannot order the model run after the pre-processing",
            ))
    }

    /// The values' bytes on the GPU.
    pub fn slice(&self) -> &CudaSlice<u8> {
        self.buffer.slice()
    }

    pub fn element_type(&self) -> ElementType {
        self.buffer.element_type
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.buffer.slice().len() / self.buffer.element_type.size()
    }

    /// The device address of the first value.
    pub fn device_ptr(&self) -> u64 {
        let (ptr, _sync) = self.buffer.slice().device_ptr(self.gpu.stream());
        ptr
    }

    /// Copies the values to host memory as float32 (waits for them).
    pub fn download(&self) -> Result<Vec<f32>, CudaError> {
        let bytes = self
            .gpu
            .stream()
            .clone_dtoh(self.buffer.slice())
            .map_err(CudaError::driver("cannot copy the tensor from the GPU"))?;
        Ok(match self.element_type() {
            ElementType::Float32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            ElementType::Float16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_ne_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }
}

impl Drop for DeviceTensor {
    fn drop(&mut self) {
        // The buffer and the frame may be reused once the kernel is done.
        let _ = self.buffer.written().synchronize();
        self.source
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}
