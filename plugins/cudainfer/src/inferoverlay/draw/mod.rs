//! Drawing detection results on frames, in place: the layout (which pixels
//! get which colour, [`layout`]), the frame formats' components
//! ([`Target`]), the CPU rasteriser (the reference, [`cpu`]) and the CUDA one
//! ([`cuda`]), which paints the same primitives with the same rule.
//!
//! A component sample at (sx, sy) of a plane subsampled by 2^shift takes the
//! colour of the last primitive covering luma pixel (sx << shift,
//! sy << shift); as the layout works in 2x2 blocks, that is the colour of the
//! whole block.

pub mod cpu;
pub mod cuda;
pub mod layout;

use std::fmt;

use gst_video::VideoFormat;

use crate::cuda::CudaError;
use crate::preprocess::YuvToRgb;
#[cfg(feature = "internals")]
pub use layout::class_colour;
pub use layout::{layout, Drawing, Prim, Style};

/// Why a frame could not be drawn on.
#[derive(Debug, Clone)]
pub enum OverlayError {
    /// Caps the element's templates should not have let through.
    UnsupportedFormat(VideoFormat),
    /// The system-memory frame could not be mapped for writing.
    MapFailed,
    /// The CUDA layer's error (a failed driver call, a frame we cannot map).
    Cuda(CudaError),
    /// The CUDA backend has no GPU: the caps should be system memory.
    NoGpu(CudaError),
    /// The frame is not in the context our kernels work in.
    ForeignContext {
        frame_context: usize,
        ordinal: usize,
        primary: usize,
    },
}

impl fmt::Display for OverlayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedFormat(format) => write!(
                f,
                "inferoverlay cannot draw on {format:?} frames: put videoconvert before it \
                 (it takes NV12, I420, RGB, BGR, RGBA, BGRx, BGRA, RGBx)"
            ),
            Self::MapFailed => write!(f, "inferoverlay cannot map the video frame for writing"),
            Self::Cuda(e) => write!(f, "inferoverlay cannot draw on the CUDA frame: {e}"),
            Self::NoGpu(e) => write!(
                f,
                "inferoverlay cannot draw on the CUDA frame: {e}. Without a GPU, give inferoverlay \
                 system memory (cudadownload or a software decoder before it)"
            ),
            Self::ForeignContext {
                frame_context,
                ordinal,
                primary,
            } => write!(
                f,
                "inferoverlay cannot draw on the CUDA frame: the frame is in CUDA context \
                 {frame_context:#x}, not in the primary context of CUDA device {ordinal} \
                 ({primary:#x}). Put cudapreprocess upstream, which gives the pipeline that context, \
                 and set device-id to the decoder's GPU"
            ),
        }
    }
}

/// A CUDA failure while drawing (`?` on the CUDA layer's calls).
impl From<CudaError> for OverlayError {
    fn from(e: CudaError) -> Self {
        Self::Cuda(e)
    }
}

impl std::error::Error for OverlayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Cuda(e) | Self::NoGpu(e) => Some(e),
            _ => None,
        }
    }
}

/// Where one colour component lives: byte `offset` of each `step`-byte
/// sample of plane `plane`, the plane subsampled by `2^shift` both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub plane: usize,
    pub offset: usize,
    pub step: usize,
    pub shift: u32,
}

/// A frame format as the rasterisers see it: three components (R, G, B or
/// Y, U, V) and, for YUV, the colour matrix that encodes the colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub components: [Component; 3],
    yuv: Option<YuvToRgb>,
}

impl Target {
    pub fn new(info: &gst_video::VideoInfo) -> Result<Self, OverlayError> {
        let c = |plane, offset, step, shift| Component {
            plane,
            offset,
            step,
            shift,
        };
        let packed =
            |step, [r, g, b]: [usize; 3]| [c(0, r, step, 0), c(0, g, step, 0), c(0, b, step, 0)];
        let yuv = Some(YuvToRgb::from_colorimetry(&info.colorimetry()));
        let (components, yuv) = match info.format() {
            VideoFormat::Nv12 => ([c(0, 0, 1, 0), c(1, 0, 2, 1), c(1, 1, 2, 1)], yuv),
            VideoFormat::I420 => ([c(0, 0, 1, 0), c(1, 0, 1, 1), c(2, 0, 1, 1)], yuv),
            VideoFormat::Rgb => (packed(3, [0, 1, 2]), None),
            VideoFormat::Bgr => (packed(3, [2, 1, 0]), None),
            VideoFormat::Rgba | VideoFormat::Rgbx => (packed(4, [0, 1, 2]), None),
            VideoFormat::Bgra | VideoFormat::Bgrx => (packed(4, [2, 1, 0]), None),
            other => return Err(OverlayError::UnsupportedFormat(other)),
        };
        Ok(Self { components, yuv })
    }

    /// An RGB colour as the frame's three component values: itself for RGB
    /// formats, Y, U, V with the frame's matrix and range for YUV.
    pub fn encode(&self, rgb: [u8; 3]) -> [u8; 3] {
        let Some(m) = &self.yuv else { return rgb };
        // The inverse of YuvToRgb::convert: its factors are 2(1 - kr) and
        // 2(1 - kb), so the matrix's weights come back from them.
        let (kr, kb) = (1.0 - m.r_v / 2.0, 1.0 - m.b_u / 2.0);
        let [r, g, b] = rgb.map(f32::from);
        let y = kr * r + (1.0 - kr - kb) * g + kb * b;
        let code = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        [
            code(y / m.y_gain + m.y_offset),
            code((b - y) / m.b_u / m.uv_gain + 128.0),
            code((r - y) / m.r_v / m.uv_gain + 128.0),
        ]
    }

    /// `drawing`'s primitives with their colours encoded for this format.
    pub fn encode_all(&self, drawing: &Drawing) -> Vec<Prim> {
        drawing
            .prims
            .iter()
            .map(|p| Prim {
                colour: self.encode(p.colour),
                text_colour: self.encode(p.text_colour),
                ..*p
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_encode_with_the_frames_matrix() {
        gst::init().unwrap();
        let info = |colorimetry: &str| {
            gst_video::VideoInfo::builder(VideoFormat::Nv12, 64, 64)
                .colorimetry(&colorimetry.parse().unwrap())
                .build()
                .unwrap()
        };
        // BT.601 limited range: white 235, black 16, red (81, 90, 240).
        let t = Target::new(&info("bt601")).unwrap();
        assert_eq!(t.encode([255, 255, 255]), [235, 128, 128]);
        assert_eq!(t.encode([0, 0, 0]), [16, 128, 128]);
        assert_eq!(t.encode([255, 0, 0]), [81, 90, 240]);
        // BT.709 limited: red (63, 102, 240).
        let t = Target::new(&info("bt709")).unwrap();
        assert_eq!(t.encode([255, 0, 0]), [63, 102, 240]);
        // Full range (JPEG): red (76, 85, 255).
        let t = Target::new(&info("1:4:0:0")).unwrap();
        assert_eq!(t.encode([255, 0, 0]), [76, 85, 255]);
        // Decoding the code gives the colour back, within rounding.
        let m = YuvToRgb::from_colorimetry(&info("bt709").colorimetry());
        let [y, u, v] = Target::new(&info("bt709")).unwrap().encode([128, 128, 0]);
        let back = m.convert(y as f32, u as f32, v as f32);
        for (a, b) in back.iter().zip([128.0, 128.0, 0.0]) {
            assert!((a - b).abs() <= 2.0, "{back:?}");
        }
    }
}
