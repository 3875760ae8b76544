//! Paints the overlay on frames in CUDA memory, in place, with one kernel
//! launch per frame (`overlay.cu`): the primitives, their occluders and the
//! glyphs go up as one small array, and the kernel applies the CPU path's
//! rule to the same primitives, so both give the same pixels.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaEvent, CudaFunction, DevicePtr, LaunchConfig, PushKernelArg};

use super::layout::Prim;
use super::{Drawing, OverlayError, Target};
use crate::cuda::device::KernelSource;
use crate::cuda::gst_cuda::{self, DeviceFrame};
use crate::cuda::{CudaError, Gpu};

const KERNEL: KernelSource = KernelSource {
    sources: &[include_str!("overlay.cu")],
    name: "overlay",
};

/// Threads per block, one block per primitive: a box edge of a 1080p frame
/// has a few thousand samples, a label a few thousand more.
const THREADS: u32 = 256;

/// Mirrors `OverlayParams` in overlay.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct OverlayParams {
    component: [u64; 3],
    pitch: [i32; 3],
    step: [i32; 3],
    shift: [i32; 3],
    prims: u64,
    occluders: u64,
    glyphs: u64,
    n_prims: i32,
}

// SAFETY: plain old data with the C layout the kernel expects.
unsafe impl cudarc::driver::DeviceRepr for OverlayParams {}

/// 32-bit words of `Prim` in overlay.cu: a primitive with its colours
/// already encoded and the slice of the occluder list that is its own.
fn prim_words(p: &Prim, occluders_at: usize, occluders_count: usize) -> [i32; 14] {
    let pack = |c: [u8; 3]| i32::from_le_bytes([c[0], c[1], c[2], 0]);
    [
        p.kind,
        p.x0,
        p.y0,
        p.x1,
        p.y1,
        pack(p.colour),
        pack(p.text_colour),
        p.text_x,
        p.text_y,
        p.scale,
        p.glyph_at,
        p.glyph_count,
        occluders_at as i32,
        occluders_count as i32,
    ]
}

/// Everything the kernel reads, as one array of words: the primitives, the
/// occluder lists (for each primitive, the later ones whose rectangles
/// overlap its own: only they can paint over it), then the glyph rows.
/// Returns the words and where the occluders and glyphs start.
fn upload_words(prims: &[Prim], glyphs: &[u8]) -> (Vec<i32>, usize, usize) {
    let mut occluders = Vec::new();
    let mut words = Vec::with_capacity(prims.len() * 14);
    for (i, p) in prims.iter().enumerate() {
        let at = occluders.len();
        occluders.extend(
            prims[i + 1..]
                .iter()
                .enumerate()
                .filter(|(_, q)| p.overlaps(q))
                .map(|(j, _)| (i + 1 + j) as i32),
        );
        words.extend(prim_words(p, at, occluders.len() - at));
    }
    let occluders_at = words.len();
    words.extend(occluders);
    let glyphs_at = words.len();
    words.extend(
        glyphs
            .chunks(4)
            .map(|c| i32::from_le_bytes(std::array::from_fn(|k| c.get(k).copied().unwrap_or(0)))),
    );
    (words, occluders_at, glyphs_at)
}

pub struct CudaOverlay {
    gpu: Arc<Gpu>,
    kernel: CudaFunction,
    /// Recorded on a frame's producer stream for ours to wait on; the lock
    /// keeps record and wait of one frame together.
    producer_done: Mutex<CudaEvent>,
}

impl CudaOverlay {
    pub fn new(gpu: Arc<Gpu>) -> Result<Self, OverlayError> {
        let kernel = gpu.kernel(KERNEL)?;
        let producer_done = gpu
            .stream()
            .context()
            .new_event(None)
            .map_err(CudaError::driver("cannot create a CUDA event"))?;
        Ok(Self {
            gpu,
            kernel,
            producer_done: Mutex::new(producer_done),
        })
    }

    /// Draws `drawing` on `frame` (of `target`'s format) and waits until it
    /// is done, so that whoever maps the frame next sees it drawn.
    pub fn draw(
        &self,
        frame: DeviceFrame,
        target: &Target,
        drawing: &Drawing,
    ) -> Result<(), OverlayError> {
        let gpu = &self.gpu;
        if frame.context != gpu.cu_context() {
            return Err(OverlayError::ForeignContext {
                frame_context: frame.context,
                ordinal: gpu.ordinal(),
                primary: gpu.cu_context(),
            });
        }
        let prims = target.encode_all(drawing);
        if prims.is_empty() {
            return Ok(());
        }
        let stream = gpu.stream();
        {
            let event = self.producer_done.lock().unwrap_or_else(|e| e.into_inner());
            gst_cuda::wait_for_producer(gpu, &event, &frame)?;
        }
        let (words, occluders_at, glyphs_at) = upload_words(&prims, &drawing.glyphs);
        let data = stream
            .clone_htod(&words)
            .map_err(CudaError::driver("cannot upload the overlay to the GPU"))?;
        let base = data.device_ptr(stream).0;
        let mut params = OverlayParams {
            prims: base,
            occluders: base + 4 * occluders_at as u64,
            glyphs: base + 4 * glyphs_at as u64,
            n_prims: prims.len() as i32,
            ..Default::default()
        };
        for (k, c) in target.components.iter().enumerate() {
            params.component[k] = frame.planes[c.plane] + c.offset as u64;
            params.pitch[k] = frame.strides[c.plane];
            params.step[k] = c.step as i32;
            params.shift[k] = c.shift as i32;
        }
        let config = LaunchConfig {
            grid_dim: (prims.len() as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the parameters describe the frame mapped for writing
        // (alive in `frame` until after the synchronisation below), whose
        // planes were checked against its memory, and the uploaded array
        // (alive in `data`); every primitive lies inside the frame (the
        // layout clips them) and indexes only glyphs and occluders that
        // `upload_words` wrote.
        unsafe {
            stream
                .launch_builder(&self.kernel)
                .arg(&params)
                .launch(config)
        }
        .map_err(CudaError::driver("the overlay kernel failed to launch"))?;
        // Downstream (cudadownload, an encoder) maps the frame on its own
        // stream: the drawing must be finished before the frame is
        // unmapped and pushed.
        stream
            .synchronize()
            .map_err(CudaError::driver("the overlay kernel failed"))?;
        drop(data);
        drop(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inferoverlay::draw::layout::KIND_RECT;

    fn rect(x0: i32, x1: i32) -> Prim {
        Prim {
            kind: KIND_RECT,
            x0,
            y0: 0,
            x1,
            y1: 2,
            ..Default::default()
        }
    }

    #[test]
    fn each_primitive_lists_the_later_ones_overlapping_it() {
        let prims = [rect(0, 4), rect(2, 6), rect(8, 10), rect(0, 10)];
        let glyphs = [1u8, 2, 3, 4, 5];
        let (words, occluders_at, glyphs_at) = upload_words(&prims, &glyphs);
        assert_eq!(occluders_at, 4 * 14);
        // 0: 1 and 3; 1: 3; 2: 3; 3: none.
        let ranges: Vec<_> = (0..4)
            .map(|i| (words[i * 14 + 12], words[i * 14 + 13]))
            .collect();
        assert_eq!(ranges, [(0, 2), (2, 1), (3, 1), (4, 0)]);
        assert_eq!(&words[occluders_at..glyphs_at], [1, 3, 3, 3]);
        assert_eq!(
            &words[glyphs_at..],
            [
                i32::from_le_bytes([1, 2, 3, 4]),
                i32::from_le_bytes([5, 0, 0, 0])
            ]
        );
    }
}
