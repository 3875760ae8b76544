//! CPU reference implementation of the pre-processing (system-memory video).
//! Written for clarity: the GPU kernel is tested against it.

use gst_video::prelude::*;
use gst_video::VideoFormat;

use super::{axis_filter, geometry, Normalisation, YuvToRgb};
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

/// One colour component of a frame: samples `step` bytes apart, starting
/// `offset` bytes into each row.
struct Component<'a> {
    data: &'a [u8],
    stride: usize,
    step: usize,
    offset: usize,
    width: usize,
    height: usize,
    /// The frame size in this component's samples (half for 4:2:0 chroma).
    extent: (f64, f64),
    /// Sampling-grid offset in samples (chroma siting).
    grid_offset: (f64, f64),
}

impl Component<'_> {
    /// Resamples the component to `out_w` x `out_h`, separably: rows first,
    /// then columns.
    fn resample(&self, out_w: u32, out_h: u32) -> Vec<f32> {
        let x_taps = axis_filter(out_w, self.width, self.extent.0, self.grid_offset.0);
        let y_taps = axis_filter(out_h, self.height, self.extent.1, self.grid_offset.1);
        let ow = out_w as usize;
        let mut rows = vec![0f32; self.height * ow];
        for (y, out_row) in rows.chunks_exact_mut(ow).enumerate() {
            let row = &self.data[y * self.stride + self.offset..];
            for (out, t) in out_row.iter_mut().zip(&x_taps) {
                *out = t
                    .range()
                    .zip(&t.weights)
                    .map(|(i, w)| row[i * self.step] as f32 * w)
                    .sum();
            }
        }
        let mut out = vec![0f32; ow * out_h as usize];
        for (out_row, t) in out.chunks_exact_mut(ow).zip(&y_taps) {
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

/// Builds the tensor for one mapped frame. Fails only for formats outside
/// [`SUPPORTED_FORMATS`], which caps negotiation already excludes.
pub fn preprocess<'f>(
    frame: &'f gst_video::VideoFrameRef<&gst::BufferRef>,
    spec: &InputSpec,
) -> Result<Tensor, String> {
    let info = frame.info();
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let plane = |i: u32| -> Result<(&'f [u8], usize), String> {
        let data = frame
            .plane_data(i)
            .map_err(|e| format!("cannot read plane {i}: {e}"))?;
        Ok((data, frame.plane_stride()[i as usize] as usize))
    };
    let full = |(data, stride): (&'f [u8], usize), step, offset| Component {
        data,
        stride,
        step,
        offset,
        width: w,
        height: h,
        extent: (w as f64, h as f64),
        grid_offset: (0.0, 0.0),
    };
    let site = info.chroma_site();
    let siting = |cosited: bool| if cosited { 0.25 } else { 0.0 };
    let half = |(data, stride): (&'f [u8], usize), step, offset| Component {
        data,
        stride,
        step,
        offset,
        width: w.div_ceil(2),
        height: h.div_ceil(2),
        extent: (w as f64 / 2.0, h as f64 / 2.0),
        grid_offset: (
            siting(site.contains(gst_video::VideoChromaSite::H_COSITED)),
            siting(site.contains(gst_video::VideoChromaSite::V_COSITED)),
        ),
    };
    // Components in R, G, B order for RGB formats, Y, U, V for YUV ones.
    let (components, yuv) = match frame.format() {
        VideoFormat::Nv12 => (
            [
                full(plane(0)?, 1, 0),
                half(plane(1)?, 2, 0),
                half(plane(1)?, 2, 1),
            ],
            Some(YuvToRgb::from_colorimetry(&info.colorimetry())),
        ),
        VideoFormat::I420 => (
            [
                full(plane(0)?, 1, 0),
                half(plane(1)?, 1, 0),
                half(plane(2)?, 1, 0),
            ],
            Some(YuvToRgb::from_colorimetry(&info.colorimetry())),
        ),
        other => {
            let (step, [r, g, b]) =
                packed_layout(other).ok_or_else(|| format!("unsupported format {other:?}"))?;
            let p = plane(0)?;
            ([full(p, step, r), full(p, step, g), full(p, step, b)], None)
        }
    };

    let geom = geometry(spec, w as u32, h as u32);
    let (cw, ch) = (geom.content_width, geom.content_height);
    let [a, b, c] = components.map(|comp| comp.resample(cw, ch));

    let norm = Normalisation::new(spec);
    let (tw, th) = (spec.width as usize, spec.height as usize);
    let area = tw * th;
    let mut data = vec![0f32; 3 * area];
    for ch in 0..3 {
        data[ch * area..(ch + 1) * area].fill(norm.pad(ch, spec.pad_value));
    }
    let cw = cw as usize;
    for (i, ((&a, &b), &c)) in a.iter().zip(&b).zip(&c).enumerate() {
        let rgb = match &yuv {
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
        transform: geom.transform,
    })
}
