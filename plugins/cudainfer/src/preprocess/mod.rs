//! Turning a video frame into a model input tensor: the geometry and colour
//! maths shared by every implementation, and the CPU reference implementation.
//!
//! Definition (the GPU kernel implements the same one):
//! - the frame is resized into a `content_width` x `content_height` region at
//!   (`content_x`, `content_y`) of the tensor (letterbox keeps the aspect
//!   ratio, at the top-left, or centred with the padding split evenly, the
//!   odd pixel right or bottom; stretch fills the tensor); the rest is
//!   `pad_value`;
//! - resampling uses the triangle (bilinear) filter, widened on downscale so
//!   that every source pixel contributes (antialiasing, as PIL and
//!   torchvision's `antialias=True` do); on upscale it is plain bilinear with
//!   half-pixel centres. Each plane is resampled at its own resolution and
//!   chroma siting, YUV before conversion (see [`axis_filter`]);
//! - YUV is converted with the frame's colour matrix and range;
//! - each value is `(pixel * pixel_scale - mean[c]) / std[c]`, NCHW float32.

pub mod cpu;
pub mod cuda;
mod error;

pub use error::PreprocessError;

use std::ops::Range;

use gst_video::VideoFormat;

use crate::spec::{ChannelOrder, InputSpec, ResizeMode};
use crate::tensor::FrameTransform;

/// Raw formats both implementations read (system or CUDA memory).
pub const SUPPORTED_FORMATS: &[VideoFormat] = &[
    VideoFormat::Nv12,
    VideoFormat::I420,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgba,
    VideoFormat::Bgrx,
    VideoFormat::Bgra,
    VideoFormat::Rgbx,
];

/// Where one colour component lives in a frame and how it is resampled:
/// samples `step` bytes apart from byte `offset` in each row of plane
/// `plane`, `height` rows from row `first_row`, filtered with `x_taps` and
/// `y_taps` (indices relative to `offset` and `first_row`).
#[derive(Debug, Clone)]
pub struct ComponentPlan {
    pub plane: u32,
    pub step: usize,
    pub offset: usize,
    pub first_row: usize,
    pub height: usize,
    pub x_taps: Vec<AxisTaps>,
    pub y_taps: Vec<AxisTaps>,
}

impl ComponentPlan {
    /// `start`: the region's first sample (column, row) in the component;
    /// `size`: the region's samples; `extent`: the region in those samples
    /// (half the luma size for 4:2:0 chroma); `grid_offset`: chroma siting.
    fn new(
        (plane, step, offset): (u32, usize, usize),
        start: (usize, usize),
        size: (usize, usize),
        extent: (f64, f64),
        grid_offset: (f64, f64),
        out: (u32, u32),
    ) -> Self {
        Self {
            plane,
            step,
            offset: offset + start.0 * step,
            first_row: start.1,
            height: size.1,
            x_taps: axis_filter(out.0, size.0, extent.0, grid_offset.0),
            y_taps: axis_filter(out.1, size.1, extent.1, grid_offset.1),
        }
    }
}

fn packed_layout(format: VideoFormat) -> Option<(usize, [usize; 3])> {
    Some(match format {
        VideoFormat::Rgb => (3, [0, 1, 2]),
        VideoFormat::Bgr => (3, [2, 1, 0]),
        VideoFormat::Rgba | VideoFormat::Rgbx => (4, [0, 1, 2]),
        VideoFormat::Bgrx | VideoFormat::Bgra => (4, [2, 1, 0]),
        _ => return None,
    })
}

/// Everything that turns frames of one format and size into tensors of one
/// spec, computed once per caps; the CPU and CUDA implementations execute it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: InputSpec,
    pub geometry: Geometry,
    pub norm: Normalisation,
    /// Components in R, G, B order for RGB formats, Y, U, V for YUV ones.
    pub components: [ComponentPlan; 3],
    /// The conversion for YUV formats.
    pub yuv: Option<YuvToRgb>,
}

/// A rectangle of a frame in whole pixels: what a tensor is made of (the
/// whole frame, or one object's crop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    pub fn whole(info: &gst_video::VideoInfo) -> Self {
        Self {
            x: 0,
            y: 0,
            width: info.width(),
            height: info.height(),
        }
    }

    /// The pixels a box (x, y, width, height in frame pixels) touches:
    /// rounded outwards, clipped to the frame, widened to even coordinates
    /// for 4:2:0 formats so that the crop starts on a chroma sample. `None`
    /// when nothing of it is in the frame.
    pub fn around(bbox: [f32; 4], info: &gst_video::VideoInfo) -> Option<Self> {
        let (fw, fh) = (info.width() as f32, info.height() as f32);
        let [x, y, w, h] = bbox;
        if ![x, y, w, h].iter().all(|v| v.is_finite()) {
            return None;
        }
        let even = is_420(info.format());
        let down = |v: f32, limit: f32| {
            let v = v.floor().clamp(0.0, limit) as u32;
            if even {
                v & !1
            } else {
                v
            }
        };
        let up = |v: f32, limit: f32| {
            let v = v.ceil().clamp(0.0, limit) as u32;
            if even {
                (v + (v & 1)).min(limit as u32)
            } else {
                v
            }
        };
        let (x1, y1) = (down(x, fw), down(y, fh));
        let (x2, y2) = (up(x + w, fw), up(y + h, fh));
        (x2 > x1 && y2 > y1).then(|| Self {
            x: x1,
            y: y1,
            width: x2 - x1,
            height: y2 - y1,
        })
    }
}

fn is_420(format: VideoFormat) -> bool {
    matches!(format, VideoFormat::Nv12 | VideoFormat::I420)
}

impl Plan {
    /// The whole frame. Fails only for formats outside
    /// [`SUPPORTED_FORMATS`].
    pub fn new(info: &gst_video::VideoInfo, spec: &InputSpec) -> Result<Self, PreprocessError> {
        Self::for_region(info, spec, Region::whole(info))
    }

    /// `region` of the frame (inside it; even coordinates for 4:2:0, see
    /// [`Region::around`]), resized as the whole frame would be; the
    /// transform still maps the tensor to whole-frame pixels.
    pub fn for_region(
        info: &gst_video::VideoInfo,
        spec: &InputSpec,
        region: Region,
    ) -> Result<Self, PreprocessError> {
        let (w, h) = (region.width as usize, region.height as usize);
        let (x0, y0) = (region.x as usize, region.y as usize);
        let mut geometry = geometry(spec, w as u32, h as u32);
        let t = &mut geometry.transform;
        t.offset_x -= region.x as f32 * t.scale_x;
        t.offset_y -= region.y as f32 * t.scale_y;
        t.frame_width = info.width();
        t.frame_height = info.height();
        let out = (geometry.content_width, geometry.content_height);
        let full = |layout| {
            ComponentPlan::new(
                layout,
                (x0, y0),
                (w, h),
                (w as f64, h as f64),
                (0.0, 0.0),
                out,
            )
        };
        let site = info.chroma_site();
        let siting = |flag| if site.contains(flag) { 0.25 } else { 0.0 };
        let half = |layout| {
            ComponentPlan::new(
                layout,
                (x0 / 2, y0 / 2),
                (w.div_ceil(2), h.div_ceil(2)),
                (w as f64 / 2.0, h as f64 / 2.0),
                (
                    siting(gst_video::VideoChromaSite::H_COSITED),
                    siting(gst_video::VideoChromaSite::V_COSITED),
                ),
                out,
            )
        };
        let yuv = Some(YuvToRgb::from_colorimetry(&info.colorimetry()));
        let (components, yuv) = match info.format() {
            VideoFormat::Nv12 => ([full((0, 1, 0)), half((1, 2, 0)), half((1, 2, 1))], yuv),
            VideoFormat::I420 => ([full((0, 1, 0)), half((1, 1, 0)), half((2, 1, 0))], yuv),
            other => {
                let (step, [r, g, b]) =
                    packed_layout(other).ok_or(PreprocessError::UnsupportedFormat(other))?;
                (
                    [full((0, step, r)), full((0, step, g)), full((0, step, b))],
                    None,
                )
            }
        };
        Ok(Self {
            spec: spec.clone(),
            geometry,
            norm: Normalisation::new(spec),
            components,
            yuv,
        })
    }

    /// The tensor value of the letterbox padding, per tensor channel.
    pub fn pad_values(&self) -> [f32; 3] {
        std::array::from_fn(|c| self.norm.pad(c, self.spec.pad_value))
    }
}

/// Where the frame lands in the tensor: a `content_width` x
/// `content_height` region whose top-left pixel is (`content_x`,
/// `content_y`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub content_x: u32,
    pub content_y: u32,
    pub content_width: u32,
    pub content_height: u32,
    pub transform: FrameTransform,
}

pub fn geometry(spec: &InputSpec, frame_width: u32, frame_height: u32) -> Geometry {
    let (content_width, content_height) = match spec.resize_mode {
        ResizeMode::Stretch => (spec.width, spec.height),
        // Auto has been resolved by the time a frame arrives; letterbox is the
        // safe reading of it.
        ResizeMode::Letterbox | ResizeMode::LetterboxCentred | ResizeMode::Auto => {
            let r = f64::min(
                spec.width as f64 / frame_width as f64,
                spec.height as f64 / frame_height as f64,
            );
            let w = ((frame_width as f64 * r) as u32).clamp(1, spec.width);
            let h = ((frame_height as f64 * r) as u32).clamp(1, spec.height);
            (w, h)
        }
    };
    let (content_x, content_y) = match spec.resize_mode {
        ResizeMode::LetterboxCentred => (
            (spec.width - content_width) / 2,
            (spec.height - content_height) / 2,
        ),
        _ => (0, 0),
    };
    Geometry {
        content_x,
        content_y,
        content_width,
        content_height,
        transform: FrameTransform {
            scale_x: content_width as f32 / frame_width as f32,
            scale_y: content_height as f32 / frame_height as f32,
            offset_x: content_x as f32,
            offset_y: content_y as f32,
            frame_width,
            frame_height,
        },
    }
}

/// Per-channel affine normalisation in tensor channel order:
/// `value = pixel * gain[c] + bias[c]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    /// For each tensor channel, which of R (0), G (1), B (2) it holds.
    pub source_channel: [usize; 3],
    pub gain: [f32; 3],
    pub bias: [f32; 3],
}

impl Normalisation {
    pub fn new(spec: &InputSpec) -> Self {
        let source_channel = match spec.channel_order {
            ChannelOrder::Bgr => [2, 1, 0],
            ChannelOrder::Rgb | ChannelOrder::Auto => [0, 1, 2],
        };
        let mut gain = [0.0; 3];
        let mut bias = [0.0; 3];
        for c in 0..3 {
            gain[c] = spec.pixel_scale / spec.std[c];
            bias[c] = -spec.mean[c] / spec.std[c];
        }
        Self {
            source_channel,
            gain,
            bias,
        }
    }

    /// The tensor value of the letterbox padding in channel `c`.
    pub fn pad(&self, c: usize, pad_value: f32) -> f32 {
        pad_value * self.gain[c] + self.bias[c]
    }
}

/// YUV to RGB conversion for one colour matrix and range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuvToRgb {
    pub y_offset: f32,
    pub y_gain: f32,
    pub uv_gain: f32,
    pub r_v: f32,
    pub g_u: f32,
    pub g_v: f32,
    pub b_u: f32,
}

impl YuvToRgb {
    /// `kr`, `kb`: the matrix's luma weights; `full_range`: 0..255 codes.
    pub fn new(kr: f32, kb: f32, full_range: bool) -> Self {
        let kg = 1.0 - kr - kb;
        let (y_offset, y_gain, uv_gain) = if full_range {
            (0.0, 1.0, 1.0)
        } else {
            (16.0, 255.0 / 219.0, 255.0 / 224.0)
        };
        Self {
            y_offset,
            y_gain,
            uv_gain,
            r_v: 2.0 * (1.0 - kr),
            g_u: -2.0 * kb * (1.0 - kb) / kg,
            g_v: -2.0 * kr * (1.0 - kr) / kg,
            b_u: 2.0 * (1.0 - kb),
        }
    }

    pub fn from_colorimetry(c: &gst_video::VideoColorimetry) -> Self {
        use gst_video::VideoColorMatrix as M;
        let (kr, kb) = match c.matrix() {
            M::Bt709 => (0.2126, 0.0722),
            M::Bt2020 => (0.2627, 0.0593),
            M::Smpte240m => (0.212, 0.087),
            M::Fcc => (0.30, 0.11),
            _ => (0.299, 0.114),
        };
        Self::new(kr, kb, c.range() == gst_video::VideoColorRange::Range0_255)
    }

    /// Converts one sample (codes 0..255) to RGB on the 0..255 scale.
    #[inline]
    pub fn convert(&self, y: f32, u: f32, v: f32) -> [f32; 3] {
        let y = (y - self.y_offset) * self.y_gain;
        let u = (u - 128.0) * self.uv_gain;
        let v = (v - 128.0) * self.uv_gain;
        [
            (y + self.r_v * v).clamp(0.0, 255.0),
            (y + self.g_u * u + self.g_v * v).clamp(0.0, 255.0),
            (y + self.b_u * u).clamp(0.0, 255.0),
        ]
    }
}

/// The source pixels and weights that make one output sample along an axis.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisTaps {
    pub first: usize,
    pub weights: Vec<f32>,
}

impl AxisTaps {
    pub fn range(&self) -> Range<usize> {
        self.first..self.first + self.weights.len()
    }
}

/// Triangle-filter taps for resampling a plane axis of `source_len` samples
/// that spans `extent` sample widths of the output (the plane's share of the
/// frame: `source_len` for luma, half the luma size for 4:2:0 chroma) to
/// `output_len` samples. `offset` shifts the sampling grid in source samples:
/// 0 for samples centred in their cell, 0.25 for chroma co-sited with the
/// left (top) luma sample.
pub fn axis_filter(output_len: u32, source_len: usize, extent: f64, offset: f64) -> Vec<AxisTaps> {
    let scale = output_len as f64 / extent;
    let filter_scale = (1.0 / scale).max(1.0);
    (0..output_len)
        .map(|d| {
            // Continuous source coordinate of the output sample's centre,
            // where source sample i covers [i, i + 1).
            let centre = (d as f64 + 0.5) / scale + offset;
            let first =
                ((centre - filter_scale + 0.5).floor().max(0.0) as usize).min(source_len - 1);
            let last = (((centre + filter_scale + 0.5).floor().max(0.0)) as usize)
                .min(source_len)
                .max(first + 1);
            let mut weights: Vec<f32> = (first..last)
                .map(|i| {
                    let x = (i as f64 + 0.5 - centre) / filter_scale;
                    (1.0 - x.abs()).max(0.0) as f32
                })
                .collect();
            let sum: f32 = weights.iter().sum();
            if sum > 0.0 {
                weights.iter_mut().for_each(|w| *w /= sum);
            } else {
                // The centre is beyond the edge: take the edge sample.
                let edge = if centre < 0.5 { 0 } else { weights.len() - 1 };
                weights
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, w)| *w = (i == edge) as u8 as f32);
            }
            AxisTaps { first, weights }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(format: VideoFormat) -> gst_video::VideoInfo {
        gst::init().unwrap();
        gst_video::VideoInfo::builder(format, 100, 80)
            .build()
            .unwrap()
    }

    #[test]
    fn a_region_is_the_pixels_a_box_touches() {
        let rgb = info(VideoFormat::Rgb);
        let r = Region::around([10.2, 5.7, 20.1, 30.0], &rgb).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height), (10, 5, 21, 31));
        // Clipped to the frame; nothing left of a box outside it.
        let r = Region::around([-5.0, 70.5, 200.0, 50.0], &rgb).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height), (0, 70, 100, 10));
        assert_eq!(Region::around([120.0, 0.0, 10.0, 10.0], &rgb), None);
        assert_eq!(Region::around([f32::NAN, 0.0, 10.0, 10.0], &rgb), None);
        // 4:2:0: even start and end, so the crop starts on a chroma sample.
        let r = Region::around([11.5, 5.0, 20.0, 30.0], &info(VideoFormat::Nv12)).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height), (10, 4, 22, 32));
    }

    #[test]
    fn a_region_plan_maps_its_tensor_back_to_frame_pixels() {
        let rgb = info(VideoFormat::Rgb);
        let spec = InputSpec::stretched_rgb(20, 20, 0.0, 1.0);
        let region = Region {
            x: 30,
            y: 10,
            width: 40,
            height: 10,
        };
        let plan = Plan::for_region(&rgb, &spec, region).unwrap();
        let t = plan.geometry.transform;
        assert_eq!(t.to_frame(0.0, 0.0), (30.0, 10.0));
        assert_eq!(t.to_frame(20.0, 20.0), (70.0, 20.0));
        assert_eq!((t.frame_width, t.frame_height), (100, 80));
        let c = &plan.components[0];
        assert_eq!((c.offset, c.first_row, c.height), (90, 10, 10));
        assert_eq!(c.x_taps.len(), 20);
    }

    #[test]
    fn upscale_is_half_pixel_bilinear() {
        let taps = axis_filter(4, 2, 2.0, 0.0);
        // Output centres at source 0.25, 0.75, 1.25, 1.75 (cell units):
        // clamped to sample 0, then 3/4 + 1/4, 1/4 + 3/4, clamped to 1.
        assert_eq!(
            taps[0],
            AxisTaps {
                first: 0,
                weights: vec![1.0]
            }
        );
        assert_eq!(taps[1].range(), 0..2);
        assert!((taps[1].weights[0] - 0.75).abs() < 1e-6);
        assert!((taps[2].weights[1] - 0.75).abs() < 1e-6);
        assert_eq!(
            taps[3],
            AxisTaps {
                first: 1,
                weights: vec![1.0]
            }
        );
    }

    #[test]
    fn downscale_covers_every_source_sample() {
        let taps = axis_filter(3, 12, 12.0, 0.0);
        for t in &taps {
            assert!(t.weights.len() >= 4, "{t:?}");
            assert!((t.weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let mut covered = [false; 12];
        for t in &taps {
            for i in t.range() {
                covered[i] = true;
            }
        }
        assert!(covered.iter().all(|&c| c));
    }
}
