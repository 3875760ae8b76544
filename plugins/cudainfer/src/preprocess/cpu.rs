//! CPU reference implementation of the pre-processing (system-memory video).
//! Written for clarity: the GPU kernel is tested against it.

use gst_video::prelude::*;
use gst_video::VideoFormat;

use super::{axis_filter, geometry, AxisTaps, Geometry, Normalisation, YuvToRgb};
use crate::spec::InputSpec;
use crate::tensor_meta::{Tensor, TensorStorage};

/// Raw formats the CPU path reads.
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
/// samples `step` bytes apart from `offset` in each row of plane `plane`.
struct Component {
    plane: u32,
    step: usize,
    offset: usize,
    height: usize,
    x_taps: Vec<AxisTaps>,
    y_taps: Vec<AxisTaps>,
}

impl Component {
    /// `size`: the component's samples; `extent`: the frame in those samples
    /// (half the luma size for 4:2:0 chroma); `grid_offset`: chroma siting.
    fn new(
        (plane, step, offset): (u32, usize, usize),
        size: (usize, usize),
        extent: (f64, f64),
        grid_offset: (f64, f64),
        out: (u32, u32),
    ) -> Self {
        Self {
            plane,
            step,
            offset,
            height: size.1,
            x_taps: axis_filter(out.0, size.0, extent.0, grid_offset.0),
            y_taps: axis_filter(out.1, size.1, extent.1, grid_offset.1),
        }
    }

    /// Resamples the component, separably: rows first, then columns.
    fn resample(&self, data: &[u8], stride: usize) -> Vec<f32> {
        let ow = self.x_taps.len();
        let mut rows = vec![0f32; self.height * ow];
        for (y, out_row) in rows.chunks_exact_mut(ow).enumerate() {
            let row = &data[y * stride + self.offset..];
            for (out, t) in out_row.iter_mut().zip(&self.x_taps) {
                *out = t
                    .range()
                    .zip(&t.weights)
                    .map(|(i, w)| row[i * self.step] as f32 * w)
                    .sum();
            }
        }
        let mut out = vec![0f32; ow * self.y_taps.len()];
        for (out_row, t) in out.chunks_exact_mut(ow).zip(&self.y_taps) {
            for (i, w) in t.range().zip(&t.weights) {
                for (o, v) in out_row.iter_mut().zip(&rows[i * ow..(i + 1) * ow]) {
                    *o += v * w;
                }
            }
        }
        out
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

/// Pre-processing of one video format and size to one input spec; the
/// filters and constants are computed once, when caps are set.
pub struct CpuPreprocessor {
    spec: InputSpec,
    geometry: Geometry,
    norm: Normalisation,
    /// Components in R, G, B order for RGB formats, Y, U, V for YUV ones.
    components: [Component; 3],
    yuv: Option<YuvToRgb>,
}

impl CpuPreprocessor {
    /// Fails only for formats outside [`SUPPORTED_FORMATS`].
    pub fn new(info: &gst_video::VideoInfo, spec: &InputSpec) -> Result<Self, String> {
        let (w, h) = (info.width() as usize, info.height() as usize);
        let geometry = geometry(spec, w as u32, h as u32);
        let out = (geometry.content_width, geometry.content_height);
        let full = |layout| Component::new(layout, (w, h), (w as f64, h as f64), (0.0, 0.0), out);
        let site = info.chroma_site();
        let siting = |flag| if site.contains(flag) { 0.25 } else { 0.0 };
        let half = |layout| {
            Component::new(
                layout,
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
                    packed_layout(other).ok_or_else(|| format!("unsupported format {other:?}"))?;
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

    /// Builds the tensor for one mapped frame of the format given to `new`.
    pub fn run(&self, frame: &gst_video::VideoFrameRef<&gst::BufferRef>) -> Result<Tensor, String> {
        let resampled: Vec<Vec<f32>> = self
            .components
            .iter()
            .map(|c| {
                let data = frame
                    .plane_data(c.plane)
                    .map_err(|e| format!("cannot read plane {}: {e}", c.plane))?;
                Ok(c.resample(data, frame.plane_stride()[c.plane as usize] as usize))
            })
            .collect::<Result<_, String>>()?;

        let (spec, norm) = (&self.spec, &self.norm);
        let (tw, th) = (spec.width as usize, spec.height as usize);
        let area = tw * th;
        let mut data = vec![0f32; 3 * area];
        for ch in 0..3 {
            data[ch * area..(ch + 1) * area].fill(norm.pad(ch, spec.pad_value));
        }
        let cw = self.geometry.content_width as usize;
        let samples = resampled[0].iter().zip(&resampled[1]).zip(&resampled[2]);
        for (i, ((&a, &b), &c)) in samples.enumerate() {
            let rgb = match &self.yuv {
                Some(conv) => conv.convert(a, b, c),
                None => [a, b, c],
            };
            let at = (i / cw) * tw + i % cw;
            for ch in 0..3 {
                data[ch * area + at] = rgb[norm.source_channel[ch]] * norm.gain[ch] + norm.bias[ch];
            }
        }

        Ok(Tensor {
            channels: 3,
            height: th,
            width: tw,
            storage: TensorStorage::Host(data),
            transform: self.geometry.transform,
        })
    }
}
