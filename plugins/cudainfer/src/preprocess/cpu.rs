//! CPU reference implementation of the pre-processing (system-memory video).
//! Written for clarity: the GPU kernel is tested against it.

use gst_video::prelude::*;
use gst_video::VideoFormat;

use super::{geometry, Normalisation, YuvToRgb};
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

#[derive(Clone, Copy)]
struct Plane<'a> {
    data: &'a [u8],
    stride: usize,
}

impl Plane<'_> {
    #[inline]
    fn at(&self, x: usize, y: usize, bytes_per_pixel: usize, offset: usize) -> f32 {
        self.data[y * self.stride + x * bytes_per_pixel + offset] as f32
    }
}

/// One bilinear tap pair along an axis: `v = a*(1-w) + b*w`.
#[derive(Clone, Copy, Debug)]
struct Tap {
    i0: usize,
    i1: usize,
    w: f32,
}

fn tap(pos: f32, len: usize) -> Tap {
    let pos = pos.clamp(0.0, (len - 1) as f32);
    let i0 = pos.floor() as usize;
    Tap {
        i0,
        i1: (i0 + 1).min(len - 1),
        w: pos - i0 as f32,
    }
}

/// Source position (half-pixel centres) of each destination sample.
fn source_positions(dst_len: u32, scale: f32) -> Vec<f32> {
    (0..dst_len).map(|d| (d as f32 + 0.5) / scale - 0.5).collect()
}

/// Position on a half-resolution chroma plane of a luma position.
#[inline]
fn chroma_position(luma_pos: f32, cosited: bool) -> f32 {
    if cosited {
        luma_pos / 2.0
    } else {
        (luma_pos + 0.5) / 2.0 - 0.5
    }
}

#[inline]
fn bilinear(p: Plane, x: Tap, y: Tap, bpp: usize, off: usize) -> f32 {
    let top = p.at(x.i0, y.i0, bpp, off) * (1.0 - x.w) + p.at(x.i1, y.i0, bpp, off) * x.w;
    let bottom = p.at(x.i0, y.i1, bpp, off) * (1.0 - x.w) + p.at(x.i1, y.i1, bpp, off) * x.w;
    top * (1.0 - y.w) + bottom * y.w
}

enum Source<'a> {
    Packed {
        plane: Plane<'a>,
        bytes_per_pixel: usize,
        rgb_offsets: [usize; 3],
    },
    Planar420 {
        y: Plane<'a>,
        u: Plane<'a>,
        v: Plane<'a>,
        /// 2 where U and V interleave in one plane (NV12), 1 for I420.
        chroma_step: usize,
        u_offset: usize,
        v_offset: usize,
        yuv: YuvToRgb,
    },
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
pub fn preprocess(
    frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
    spec: &InputSpec,
) -> Result<Tensor, String> {
    let info = frame.info();
    let (width, height) = (frame.width(), frame.height());
    let plane = |i: u32| -> Result<Plane<'_>, String> {
        Ok(Plane {
            data: frame
                .plane_data(i)
                .map_err(|e| format!("cannot read plane {i}: {e}"))?,
            stride: frame.plane_stride()[i as usize] as usize,
        })
    };
    let source = match frame.format() {
        VideoFormat::Nv12 => Source::Planar420 {
            y: plane(0)?,
            u: plane(1)?,
            v: plane(1)?,
            chroma_step: 2,
            u_offset: 0,
            v_offset: 1,
            yuv: YuvToRgb::from_colorimetry(&info.colorimetry()),
        },
        VideoFormat::I420 => Source::Planar420 {
            y: plane(0)?,
            u: plane(1)?,
            v: plane(2)?,
            chroma_step: 1,
            u_offset: 0,
            v_offset: 0,
            yuv: YuvToRgb::from_colorimetry(&info.colorimetry()),
        },
        other => {
            let (bytes_per_pixel, rgb_offsets) =
                packed_layout(other).ok_or_else(|| format!("unsupported format {other:?}"))?;
            Source::Packed {
                plane: plane(0)?,
                bytes_per_pixel,
                rgb_offsets,
            }
        }
    };

    let geom = geometry(spec, width, height);
    let norm = Normalisation::new(spec);
    let (tw, th) = (spec.width as usize, spec.height as usize);
    let area = tw * th;
    let mut data = vec![0f32; 3 * area];
    for c in 0..3 {
        data[c * area..(c + 1) * area].fill(norm.pad(c, spec.pad_value));
    }

    let xs = source_positions(geom.content_width, geom.transform.scale_x);
    let ys = source_positions(geom.content_height, geom.transform.scale_y);
    let (w, h) = (width as usize, height as usize);
    let x_taps: Vec<Tap> = xs.iter().map(|&p| tap(p, w)).collect();
    let y_taps: Vec<Tap> = ys.iter().map(|&p| tap(p, h)).collect();
    let site = info.chroma_site();
    let h_cosited = site.contains(gst_video::VideoChromaSite::H_COSITED);
    let v_cosited = site.contains(gst_video::VideoChromaSite::V_COSITED);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let cx_taps: Vec<Tap> = xs
        .iter()
        .map(|&p| tap(chroma_position(p, h_cosited), cw))
        .collect();
    let cy_taps: Vec<Tap> = ys
        .iter()
        .map(|&p| tap(chroma_position(p, v_cosited), ch))
        .collect();

    for (ty, &yt) in y_taps.iter().enumerate() {
        let row = ty * tw;
        for (tx, &xt) in x_taps.iter().enumerate() {
            let rgb = match &source {
                Source::Packed {
                    plane,
                    bytes_per_pixel,
                    rgb_offsets,
                } => rgb_offsets.map(|off| bilinear(*plane, xt, yt, *bytes_per_pixel, off)),
                Source::Planar420 {
                    y,
                    u,
                    v,
                    chroma_step,
                    u_offset,
                    v_offset,
                    yuv,
                } => {
                    let (cxt, cyt) = (cx_taps[tx], cy_taps[ty]);
                    yuv.convert(
                        bilinear(*y, xt, yt, 1, 0),
                        bilinear(*u, cxt, cyt, *chroma_step, *u_offset),
                        bilinear(*v, cxt, cyt, *chroma_step, *v_offset),
                    )
                }
            };
            for c in 0..3 {
                data[c * area + row + tx] = rgb[norm.source_channel[c]] * norm.gain[c] + norm.bias[c];
            }
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
