//! The few functions of GStreamer's CUDA library (`libgstcuda-1.0`, from
//! gst-plugins-bad 1.22) that we need, loaded at run time: no Rust bindings
//! exist, and the plugin must load on machines without it.
//!
//! - the pipeline's CUDA context (`gst.cuda.context`), which we make wrap
//!   the device's primary context, so the decoder, our kernels and ONNX
//!   Runtime all work in one context;
//! - reading the device address, pitch and context of a `GstCudaMemory`.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use glib::translate::*;

use super::{CudaError, Gpu};

/// `GST_MAP_CUDA`: `GST_MAP_FLAG_LAST << 1`; the map's data is then the
/// `CUdeviceptr` instead of a host copy.
const GST_MAP_CUDA: u32 = gst::ffi::GST_MAP_FLAG_LAST << 1;

pub const CONTEXT_TYPE: &str = "gst.cuda.context";

type GBoolean = c_int;

struct Library {
    _lib: libloading::Library,
    load_library: unsafe extern "C" fn() -> GBoolean,
    context_new_wrapped: unsafe extern "C" fn(*mut c_void, c_int) -> *mut c_void,
    context_get_handle: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    context_new_cuda_context: unsafe extern "C" fn(*mut c_void) -> *mut gst::ffi::GstContext,
    handle_context_query: unsafe extern "C" fn(
        *mut gst::ffi::GstElement,
        *mut gst::ffi::GstQuery,
        *mut c_void,
    ) -> GBoolean,
    handle_set_context: unsafe extern "C" fn(
        *mut gst::ffi::GstElement,
        *mut gst::ffi::GstContext,
        c_int,
        *mut *mut c_void,
    ) -> GBoolean,
    is_cuda_memory: unsafe extern "C" fn(*mut gst::ffi::GstMemory) -> GBoolean,
    /// New in 1.24, absent before: the CUDA stream a memory is written on.
    memory_get_stream: Option<unsafe extern "C" fn(*mut gst::ffi::GstMemory) -> *mut c_void>,
    /// New in 1.24: the `CUstream` of a `GstCudaStream`.
    stream_get_handle: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_void>,
}

pub(super) const LIBRARY_NAME: &str = "libgstcuda-1.0.so.0";

fn library() -> Result<&'static Library, CudaError> {
    static LIB: OnceLock<Result<Library, CudaError>> = OnceLock::new();
    LIB.get_or_init(|| {
        // SAFETY: loading a GStreamer library of the same installation; the
        // symbols are the documented 1.22 API with the signatures above.
        unsafe {
            let lib = libloading::Library::new(LIBRARY_NAME).map_err(|e| {
                CudaError::GstLibraryMissing {
                    source: Arc::new(e),
                }
            })?;
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get(concat!($name, "\0").as_bytes()).map_err(|e| {
                        CudaError::GstSymbolMissing {
                            symbol: $name,
                            source: Arc::new(e),
                        }
                    })?
                };
            }
            let l = Library {
                load_library: sym!("gst_cuda_load_library"),
                context_new_wrapped: sym!("gst_cuda_context_new_wrapped"),
                context_get_handle: sym!("gst_cuda_context_get_handle"),
                context_new_cuda_context: sym!("gst_context_new_cuda_context"),
                handle_context_query: sym!("gst_cuda_handle_context_query"),
                handle_set_context: sym!("gst_cuda_handle_set_context"),
                is_cuda_memory: sym!("gst_is_cuda_memory"),
                // Optional: 1.22 lacks them, and its decoders synchronise
                // their stream before pushing, so there is nothing to wait for.
                memory_get_stream: lib.get(b"gst_cuda_memory_get_stream\0").ok().map(|f| *f),
                stream_get_handle: lib.get(b"gst_cuda_stream_get_handle\0").ok().map(|f| *f),
                _lib: lib,
            };
            if (l.load_library)() == 0 {
                return Err(CudaError::GstNoDriver);
            }
            Ok(l)
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Whether GStreamer's CUDA library tells the stream a memory is written on
/// (1.24 or later); false without the library.
pub fn has_memory_streams() -> bool {
    library().is_ok_and(|l| l.memory_get_stream.is_some() && l.stream_get_handle.is_some())
}

/// A reference to a `GstCudaContext`.
pub struct CudaContext(NonNull<c_void>);

// SAFETY: GstCudaContext is a GstObject, reference counted atomically and
// documented as usable from any thread.
unsafe impl Send for CudaContext {}
unsafe impl Sync for CudaContext {}

impl Drop for CudaContext {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { gst::ffi::gst_object_unref(self.0.as_ptr().cast()) }
    }
}

impl CudaContext {
    /// A GStreamer context object for `gpu`'s primary context.
    pub fn wrap_primary(gpu: &Gpu) -> Result<Self, CudaError> {
        let lib = library()?;
        // SAFETY: the primary context stays retained for the process (see
        // device::GPUS); the wrapper does not destroy it.
        let ptr =
            unsafe { (lib.context_new_wrapped)(gpu.cu_context() as *mut c_void, gpu.cu_device()) };
        NonNull::new(ptr).map(Self).ok_or(CudaError::WrapContext)
    }

    /// The context in a `gst.cuda.context` GstContext, if it is one.
    pub fn from_gst_context(element: &gst::Element, context: &gst::Context) -> Option<Self> {
        let lib = library().ok()?;
        let mut out: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid element and context; `out` receives a new reference.
        let found = unsafe {
            (lib.handle_set_context)(
                element.to_glib_none().0,
                context.to_glib_none().0,
                -1,
                &mut out,
            )
        };
        (found != 0).then(|| NonNull::new(out).map(Self)).flatten()
    }

    /// The raw `CUcontext`.
    pub fn handle(&self) -> usize {
        library().map_or(0, |lib| {
            // SAFETY: a valid GstCudaContext.
            unsafe { (lib.context_get_handle)(self.0.as_ptr()) as usize }
        })
    }

    /// The CUDA device ordinal the context is on (its `cuda-device-id`
    /// property), if it says.
    pub fn device_id(&self) -> Option<u32> {
        // SAFETY: a GstCudaContext is a GObject, alive while `self` holds
        // its reference; borrowed, not reffed.
        let object: Borrowed<glib::Object> =
            unsafe { from_glib_borrow(self.0.as_ptr() as *mut glib::gobject_ffi::GObject) };
        super::placement::cuda_device_property(&object)
    }

    /// A `gst.cuda.context` GstContext holding this context.
    pub fn to_gst_context(&self) -> Option<gst::Context> {
        let lib = library().ok()?;
        // SAFETY: returns a new, owned GstContext.
        unsafe {
            let ptr = (lib.context_new_cuda_context)(self.0.as_ptr());
            (!ptr.is_null()).then(|| from_glib_full(ptr))
        }
    }

    /// Answers a context query with this context; false if it is not a
    /// CUDA context query.
    pub fn answer_query(&self, element: &gst::Element, query: &mut gst::QueryRef) -> bool {
        let Ok(lib) = library() else { return false };
        // SAFETY: valid element, writable query and context.
        unsafe {
            (lib.handle_context_query)(
                element.to_glib_none().0,
                query.as_mut_ptr(),
                self.0.as_ptr(),
            ) != 0
        }
    }
}

/// The head of `GstCudaMemory` (gst/cuda/gstcudamemory.h, 1.22): the
/// context pointer and the video info follow the `GstMemory`.
#[repr(C)]
struct CudaMemoryHead {
    mem: gst::ffi::GstMemory,
    context: *mut c_void,
    info: gst_video::ffi::GstVideoInfo,
}

/// CUDA memory mapped for reading on the device; unmapped on drop, which
/// must wait until no kernel reads it any more.
pub struct MappedCudaMemory {
    memory: gst::Memory,
    map: gst::ffi::GstMapInfo,
}

// SAFETY: the map info only refers to the memory, which is thread-safe.
unsafe impl Send for MappedCudaMemory {}
unsafe impl Sync for MappedCudaMemory {}

impl Drop for MappedCudaMemory {
    fn drop(&mut self) {
        // SAFETY: mapped in `device_frame` and not unmapped since.
        unsafe { gst::ffi::gst_memory_unmap(self.memory.as_mut_ptr(), &mut self.map) }
    }
}

/// A frame in CUDA memory, read where it lies.
pub struct DeviceFrame {
    /// Keeps the memory mapped while kernels read it.
    pub memory: MappedCudaMemory,
    /// Device address of each plane.
    pub planes: [u64; 4],
    pub strides: [i32; 4],
    /// The `CUcontext` the memory belongs to.
    pub context: usize,
    /// The `CUstream` the memory is written on (GStreamer >= 1.24), owned by
    /// the memory: private so that it cannot outlive `memory`.
    producer_stream: Option<usize>,
}

/// Queues on `gpu`'s stream a wait for all work queued so far on the
/// frame's producer stream, without a host wait; false where there is
/// nothing to wait for (no producer stream, or it is ours). `event` is a
/// reusable event of the frame's context; the caller must keep other
/// threads from recording it between our record and wait.
pub fn wait_for_producer(
    gpu: &Gpu,
    event: &cudarc::driver::CudaEvent,
    frame: &DeviceFrame,
) -> Result<bool, CudaError> {
    let ours = gpu.stream();
    let Some(producer) = frame.producer_stream else {
        return Ok(false);
    };
    if producer == ours.cu_stream() as usize {
        return Ok(false);
    }
    if frame.context != gpu.cu_context() || !Arc::ptr_eq(event.context(), ours.context()) {
        return Err(CudaError::ForeignProducer);
    }
    ours.context()
        .bind_to_thread()
        .map_err(CudaError::driver("cannot make the CUDA context current"))?;
    // SAFETY: `producer` is the live stream of the frame's memory (mapped
    // and referenced by `frame`, which owns the stream), in our context
    // (checked above), as is the event, which `event` keeps alive.
    unsafe {
        cudarc::driver::result::event::record(
            event.cu_event(),
            producer as cudarc::driver::sys::CUstream,
        )
    }
    .map_err(CudaError::driver(
        "cannot record an event on the decoder's CUDA stream",
    ))?;
    ours.wait(event).map_err(CudaError::driver(
        "cannot make our CUDA stream wait for the decoder's",
    ))?;
    Ok(true)
}

/// The one memory block of a CUDA frame, checked to be CUDA memory.
fn cuda_memory(lib: &Library, buffer: &gst::BufferRef) -> Result<gst::Memory, CudaError> {
    // A new reference, not `to_owned()`: that copies the memory (a
    // cuMemAllocPitch, a blocking copy and a cuMemFree per frame), which
    // serialised every stream on the driver's locks.
    let memory = match (buffer.n_memory(), buffer.memory(0)) {
        (1, Some(memory)) => memory,
        (blocks, _) => return Err(CudaError::MemoryBlocks { blocks }),
    };
    // SAFETY: a valid GstMemory.
    if unsafe { (lib.is_cuda_memory)(memory.as_mut_ptr()) } == 0 {
        return Err(CudaError::NotCudaMemory);
    }
    Ok(memory)
}

/// Locates the planes of `buffer`'s CUDA memory, mapped for reading. The
/// error says what is wrong with the buffer.
pub fn device_frame(
    buffer: &gst::BufferRef,
    info: &gst_video::VideoInfo,
) -> Result<DeviceFrame, CudaError> {
    let lib = library()?;
    let memory = cuda_memory(lib, buffer)?;
    // SAFETY: it is a GstCudaMemory (checked above); mapping with
    // GST_MAP_CUDA returns the device address.
    let mapped = unsafe {
        let mut map = std::mem::MaybeUninit::<gst::ffi::GstMapInfo>::zeroed();
        let flags = gst::ffi::GST_MAP_READ | GST_MAP_CUDA;
        if gst::ffi::gst_memory_map(memory.as_mut_ptr(), map.as_mut_ptr(), flags) == 0 {
            return Err(CudaError::Map);
        }
        MappedCudaMemory {
            memory,
            map: map.assume_init(),
        }
    };
    locate(lib, buffer, info, mapped)
}

/// As [`device_frame`], mapped for writing: memory the buffer shares with
/// another (a tee's other branch) is first copied on the GPU and the copy
/// put in the buffer, so the write is seen by this buffer only.
pub fn device_frame_mut(
    buffer: &mut gst::BufferRef,
    info: &gst_video::VideoInfo,
) -> Result<DeviceFrame, CudaError> {
    let lib = library()?;
    cuda_memory(lib, buffer)?;
    // SAFETY: a writable buffer (a &mut BufferRef) of one CUDA memory
    // (checked above). gst_buffer_map, unlike gst_memory_map, replaces a
    // memory that cannot be mapped for writing with a mapped copy; the map
    // holds a reference to the mapped memory, which MappedCudaMemory takes
    // over and releases after unmapping, as gst_buffer_unmap would.
    let mapped = unsafe {
        let mut map = std::mem::MaybeUninit::<gst::ffi::GstMapInfo>::zeroed();
        let flags = gst::ffi::GST_MAP_WRITE | GST_MAP_CUDA;
        if gst::ffi::gst_buffer_map(buffer.as_mut_ptr(), map.as_mut_ptr(), flags) == 0 {
            return Err(CudaError::MapWritable);
        }
        let map = map.assume_init();
        MappedCudaMemory {
            memory: from_glib_full(map.memory),
            map,
        }
    };
    // SAFETY: a valid GstMemory, held by `mapped`.
    if unsafe { (lib.is_cuda_memory)(mapped.memory.as_mut_ptr()) } == 0 {
        return Err(CudaError::CopyNotCudaMemory);
    }
    locate(lib, buffer, info, mapped)
}

/// The planes of a mapped CUDA frame, checked against its memory.
fn locate(
    lib: &Library,
    buffer: &gst::BufferRef,
    info: &gst_video::VideoInfo,
    mapped: MappedCudaMemory,
) -> Result<DeviceFrame, CudaError> {
    let base = mapped.map.data as u64;
    let size = mapped.map.size as u64;
    // SAFETY: the memory is a GstCudaMemory (checked by the callers), whose
    // layout starts with CudaMemoryHead, alive while `mapped` holds it.
    let head = mapped.memory.as_mut_ptr() as *const CudaMemoryHead;
    let context = unsafe { (lib.context_get_handle)((*head).context) as usize };
    let producer_stream = match (lib.memory_get_stream, lib.stream_get_handle) {
        (Some(get_stream), Some(get_handle)) => {
            // SAFETY: a GstCudaMemory, kept alive by `mapped`; the stream
            // returned is borrowed from it (transfer none), NULL for the
            // default stream, and get_handle accepts NULL.
            let handle = unsafe {
                let stream = get_stream(mapped.memory.as_mut_ptr());
                if stream.is_null() {
                    std::ptr::null_mut()
                } else {
                    get_handle(stream)
                }
            };
            (!handle.is_null()).then_some(handle as usize)
        }
        _ => None,
    };
    // The buffer's video meta has the layout; the memory's own info is the
    // fallback (GstCudaMemory always records it).
    let meta = buffer.meta::<gst_video::VideoMeta>();
    let mem_info;
    let (offsets, strides) = match &meta {
        Some(meta) => (meta.offset(), meta.stride()),
        None => {
            // SAFETY: the memory (held by `mapped`) is a GstCudaMemory.
            mem_info = unsafe { gst_video::VideoInfo::from_glib_none(&(*head).info as *const _) };
            (mem_info.offset(), mem_info.stride())
        }
    };
    let n = info.n_planes() as usize;
    if offsets.len() < n || strides.len() < n || n > 4 {
        return Err(CudaError::Layout);
    }
    let extents = plane_extents(info);
    let mut frame = DeviceFrame {
        memory: mapped,
        planes: [0; 4],
        strides: [0; 4],
        context,
        producer_stream,
    };
    for p in 0..n {
        check_plane(p, offsets[p] as u64, strides[p], extents[p], size)?;
        frame.planes[p] = base + offsets[p] as u64;
        frame.strides[p] = strides[p];
    }
    Ok(frame)
}

/// Bytes per row and rows of each plane of a frame of `info`'s format and
/// size (for NV12: plane 1 has ceil(height / 2) rows of 2 * ceil(width / 2)
/// bytes).
fn plane_extents(info: &gst_video::VideoInfo) -> [(u64, u64); 4] {
    let mut extents = [(0u64, 0u64); 4];
    for c in 0..info.n_components().min(4) as u8 {
        let plane = info.comp_plane(c) as usize;
        if plane >= 4 {
            continue;
        }
        let row_bytes = info.comp_width(c) as u64 * info.comp_pstride(c).max(0) as u64;
        let rows = info.comp_height(c) as u64;
        let e = &mut extents[plane];
        *e = (e.0.max(row_bytes), e.1.max(rows));
    }
    extents
}

/// Checks that plane `plane` (`row_bytes` x `rows` at `offset`, rows
/// `stride` apart) lies within `size` bytes of memory: the kernel trusts it.
fn check_plane(
    plane: usize,
    offset: u64,
    stride: i32,
    (row_bytes, rows): (u64, u64),
    size: u64,
) -> Result<(), CudaError> {
    if stride <= 0 || (stride as u64) < row_bytes {
        return Err(CudaError::PlaneStride {
            plane,
            stride,
            row_bytes,
        });
    }
    // The last row needs only its pixels, not the padding after them.
    let needed = match rows {
        0 => 0,
        rows => stride as u64 * (rows - 1) + row_bytes,
    };
    if offset.checked_add(needed).is_none_or(|end| end > size) {
        return Err(CudaError::PlaneSize {
            plane,
            needed,
            offset,
            size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_plane_extents_round_chroma_up() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Nv12, 641, 481)
            .build()
            .unwrap();
        let e = plane_extents(&info);
        assert_eq!(e[0], (641, 481));
        assert_eq!(e[1], (642, 241));
    }

    #[test]
    fn planes_must_fit_their_memory() {
        // 640x480 NV12 at pitch 768: luma 768 * 480, chroma 768 * 240.
        let size = 768 * 720;
        assert!(check_plane(0, 0, 768, (640, 480), size).is_ok());
        assert!(check_plane(1, 768 * 480, 768, (640, 240), size).is_ok());
        // Tight last row: the padding after it need not exist.
        assert!(check_plane(1, 768 * 480, 768, (640, 240), size - 128).is_ok());
        let e = check_plane(1, 768 * 480, 768, (640, 240), size - 129)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plane 1 needs 184192 bytes at offset 368640 but its memory holds 552831"),
            "{e}"
        );
        assert!(check_plane(0, 0, 512, (640, 480), size).is_err());
        assert!(check_plane(0, 0, 0, (640, 480), size).is_err());
        assert!(check_plane(0, 0, -768, (640, 480), size).is_err());
        assert!(check_plane(0, u64::MAX, 768, (640, 480), size).is_err());
    }
}
