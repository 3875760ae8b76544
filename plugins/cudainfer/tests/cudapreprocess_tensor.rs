//! The tensor cudapreprocess attaches, checked against an independent,
//! direct (non-separable, f64) computation of the documented definition:
//! triangle filter widened on downscale, per-plane chroma siting, colour
//! matrix, letterbox (top-left or centred)/stretch, normalisation, NCHW.

mod common;

use gst::prelude::*;
use gst_check::Harness;

/// Deterministic noise: the hardest input for a resampler.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        })
        .collect()
}

/// A plane of `w` x `h` samples, `step` bytes apart, rows `stride` apart.
struct Plane<'a> {
    data: &'a [u8],
    stride: usize,
    step: usize,
    offset: usize,
    w: usize,
    h: usize,
}

impl Plane<'_> {
    /// The plane resampled at output sample (ox, oy) of an `out_w` x `out_h`
    /// grid that covers `extent` plane samples, grid shifted by `shift`.
    fn sample(
        &self,
        ox: usize,
        oy: usize,
        out: (usize, usize),
        extent: (f64, f64),
        shift: (f64, f64),
    ) -> f64 {
        let axis =
            |o: usize, out_len: usize, extent: f64, shift: f64, len: usize| -> Vec<(usize, f64)> {
                let scale = out_len as f64 / extent;
                let support = (1.0 / scale).max(1.0);
                let centre = (o as f64 + 0.5) / scale + shift;
                let mut taps: Vec<(usize, f64)> = (0..len)
                    .map(|i| {
                        (
                            i,
                            (1.0 - ((i as f64 + 0.5 - centre) / support).abs()).max(0.0),
                        )
                    })
                    .filter(|&(_, w)| w > 0.0)
                    .collect();
                if taps.is_empty() {
                    // Beyond the edge: the edge sample.
                    taps.push((if centre < 0.5 { 0 } else { len - 1 }, 1.0));
                }
                taps
            };
        let xs = axis(ox, out.0, extent.0, shift.0, self.w);
        let ys = axis(oy, out.1, extent.1, shift.1, self.h);
        let (mut sum, mut weight) = (0.0, 0.0);
        for &(y, wy) in &ys {
            for &(x, wx) in &xs {
                sum += wx * wy * self.data[y * self.stride + x * self.step + self.offset] as f64;
                weight += wx * wy;
            }
        }
        sum / weight
    }
}

struct Case {
    caps: &'static str,
    width: usize,
    height: usize,
    /// cudapreprocess properties.
    properties: &'static [(&'static str, &'static str)],
    tensor: (usize, usize),
    letterbox: bool,
    /// Letterbox content in the middle, the padding split evenly (the odd
    /// pixel right or bottom); else at the top-left.
    centred: bool,
    bgr: bool,
    pixel_scale: f64,
    mean: [f64; 3],
    std: [f64; 3],
    pad: f64,
}

/// cudapreprocess configured for `case`, fed its caps.
fn harness(case: &Case) -> Harness {
    common::init();
    // Configured before the harness starts it: started, it keeps its
    // settings (they apply at start and caps).
    let element = gst::ElementFactory::make("cudapreprocess").build().unwrap();
    for (name, value) in case.properties {
        element.set_property_from_str(name, value);
    }
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(case.caps);
    h
}

fn run_case(case: &Case, frame: gst::Buffer) -> (Vec<f32>, gstcudainfer::tensor::FrameTransform) {
    let out = harness(case).push_and_pull(frame).unwrap();
    let tensor = gstcudainfer::tensor_meta::get(&out).expect("tensor meta");
    assert_eq!(tensor.shape(), [1, 3, case.tensor.1, case.tensor.0]);
    let gstcudainfer::tensor::TensorStorage::Host(values) = &tensor.storage else {
        panic!("a system-memory frame gives a host tensor");
    };
    (values.clone(), tensor.transform)
}

/// Content size of the frame in the tensor.
fn content(case: &Case) -> (usize, usize) {
    if !case.letterbox {
        return case.tensor;
    }
    let r = f64::min(
        case.tensor.0 as f64 / case.width as f64,
        case.tensor.1 as f64 / case.height as f64,
    );
    (
        (case.width as f64 * r) as usize,
        (case.height as f64 * r) as usize,
    )
}

/// Top-left pixel of the content in the tensor.
fn content_origin(case: &Case) -> (usize, usize) {
    let (cw, ch) = content(case);
    if case.centred {
        ((case.tensor.0 - cw) / 2, (case.tensor.1 - ch) / 2)
    } else {
        (0, 0)
    }
}

/// Compares with `expected_rgb(x, y)` (0..255 RGB at content pixel x, y).
fn check(case: &Case, got: &[f32], expected_rgb: impl Fn(usize, usize) -> [f64; 3]) {
    let (tw, th) = case.tensor;
    let (cw, ch) = content(case);
    let (ox, oy) = content_origin(case);
    let order = if case.bgr { [2, 1, 0] } else { [0, 1, 2] };
    let mut max_diff = 0f64;
    for y in 0..th {
        for x in 0..tw {
            let inside = (ox..ox + cw).contains(&x) && (oy..oy + ch).contains(&y);
            let rgb = if inside {
                expected_rgb(x - ox, y - oy)
            } else {
                [case.pad; 3]
            };
            for c in 0..3 {
                let want = (rgb[order[c]] * case.pixel_scale - case.mean[c]) / case.std[c];
                let have = got[c * tw * th + y * tw + x] as f64;
                // Compare on the 0..255 pixel scale.
                let diff = (want - have).abs() * case.std[c] / case.pixel_scale;
                max_diff = max_diff.max(diff);
                assert!(
                    diff < 0.02,
                    "pixel ({x},{y}) channel {c}: want {want}, have {have}"
                );
            }
        }
    }
    eprintln!("max difference {max_diff:.5} (0..255 scale)");
}

const YOLOX_LIKE: &[(&str, &str)] = &[
    ("width", "416"),
    ("height", "416"),
    ("resize-mode", "letterbox"),
    ("channel-order", "bgr"),
    ("pad-value", "114"),
];
const IMAGENET_LIKE: &[(&str, &str)] = &[
    ("width", "320"),
    ("height", "256"),
    ("resize-mode", "stretch"),
    ("channel-order", "rgb"),
    ("pixel-scale", "0.00392156862745098"),
    ("mean", "<0.485, 0.456, 0.406>"),
    ("std", "<0.229, 0.224, 0.225>"),
];

fn yolox_like(caps: &'static str) -> Case {
    Case {
        caps,
        width: 641,
        height: 479,
        properties: YOLOX_LIKE,
        tensor: (416, 416),
        letterbox: true,
        centred: false,
        bgr: true,
        pixel_scale: 1.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        pad: 114.0,
    }
}

fn imagenet_like(caps: &'static str) -> Case {
    Case {
        caps,
        width: 641,
        height: 479,
        properties: IMAGENET_LIKE,
        tensor: (320, 256),
        letterbox: false,
        centred: false,
        bgr: false,
        pixel_scale: 1.0 / 255.0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        pad: 0.0,
    }
}

const ULTRALYTICS_LIKE: &[(&str, &str)] = &[
    ("width", "320"),
    ("height", "320"),
    ("resize-mode", "letterbox-centred"),
    ("channel-order", "rgb"),
    ("pixel-scale", "0.00392156862745098"),
    ("pad-value", "114"),
];

/// 641x479 into 320x320: 320x239 of content, 81 rows of padding, 40 above
/// and 41 below.
fn ultralytics_like(caps: &'static str) -> Case {
    Case {
        caps,
        width: 641,
        height: 479,
        properties: ULTRALYTICS_LIKE,
        tensor: (320, 320),
        letterbox: true,
        centred: true,
        bgr: false,
        pixel_scale: 1.0 / 255.0,
        mean: [0.0; 3],
        std: [1.0; 3],
        pad: 114.0,
    }
}

fn video_info(caps: &str) -> gst_video::VideoInfo {
    common::init();
    gst_video::VideoInfo::from_caps(&caps.parse::<gst::Caps>().unwrap()).unwrap()
}

const RGB_CAPS: &str = "video/x-raw,format=RGB,width=641,height=479,framerate=30/1";
const NV12_CAPS: &str =
    "video/x-raw,format=NV12,width=641,height=479,framerate=30/1,colorimetry=bt709,chroma-site=mpeg2";

fn check_rgb(case: Case) {
    let info = video_info(case.caps);
    let stride = info.stride()[0] as usize;
    let pixels = noise(stride * case.height, 7);
    let (got, transform) = run_case(&case, gst::Buffer::from_slice(pixels.clone()));
    let (cw, ch) = content(&case);
    assert_eq!(transform.scale_x, cw as f32 / 641.0);
    assert_eq!(transform.scale_y, ch as f32 / 479.0);
    let (ox, oy) = content_origin(&case);
    assert_eq!(
        (transform.offset_x, transform.offset_y),
        (ox as f32, oy as f32)
    );
    let out = (cw, ch);
    let extent = (641.0, 479.0);
    let plane = |offset| Plane {
        data: &pixels,
        stride,
        step: 3,
        offset,
        w: 641,
        h: 479,
    };
    check(&case, &got, |x, y| {
        [0, 1, 2].map(|o| plane(o).sample(x, y, out, extent, (0.0, 0.0)))
    });
}

fn check_nv12(case: Case) {
    let info = video_info(case.caps);
    let (y_stride, uv_stride) = (info.stride()[0] as usize, info.stride()[1] as usize);
    let uv_offset = info.offset()[1];
    let bytes = noise(info.size(), 11);
    let (got, _) = run_case(&case, gst::Buffer::from_slice(bytes.clone()));
    let out = content(&case);
    let luma = Plane {
        data: &bytes,
        stride: y_stride,
        step: 1,
        offset: 0,
        w: 641,
        h: 479,
    };
    let chroma = |o| Plane {
        data: &bytes[uv_offset..],
        stride: uv_stride,
        step: 2,
        offset: o,
        w: 321,
        h: 240,
    };
    // mpeg2 siting: chroma co-sited horizontally with the left luma sample.
    let (c_extent, c_shift) = ((320.5, 239.5), (0.25, 0.0));
    check(&case, &got, |x, y| {
        let yv = luma.sample(x, y, out, (641.0, 479.0), (0.0, 0.0)) - 16.0;
        let u = chroma(0).sample(x, y, out, c_extent, c_shift) - 128.0;
        let v = chroma(1).sample(x, y, out, c_extent, c_shift) - 128.0;
        // BT.709, limited range.
        [
            1.164383 * yv + 1.792741 * v,
            1.164383 * yv - 0.213249 * u - 0.532909 * v,
            1.164383 * yv + 2.112402 * u,
        ]
        .map(|c| c.clamp(0.0, 255.0))
    });
}

#[test]
fn rgb_letterbox_at_an_odd_size() {
    check_rgb(yolox_like(RGB_CAPS));
}

#[test]
fn rgb_stretch_with_mean_and_std() {
    check_rgb(imagenet_like(RGB_CAPS));
}

#[test]
fn nv12_letterbox_at_an_odd_size() {
    check_nv12(yolox_like(NV12_CAPS));
}

#[test]
fn nv12_stretch_with_mean_and_std() {
    check_nv12(imagenet_like(NV12_CAPS));
}

#[test]
fn rgb_letterbox_centred_pads_both_sides() {
    let case = ultralytics_like(RGB_CAPS);
    assert_eq!(content(&case), (320, 239));
    assert_eq!(content_origin(&case), (0, 40));
    let size = video_info(case.caps).size();
    let (got, _) = run_case(&case, gst::Buffer::from_slice(noise(size, 5)));
    // Whole rows of 114 / 255 above (40) and below (41) the picture, none
    // inside it (noise is never 114 over a whole row).
    let is_pad = |v: f32| (v - 114.0 / 255.0).abs() < 1e-6;
    let padded: Vec<usize> = (0..320)
        .filter(|&y| {
            (0..3).all(|c| {
                got[c * 320 * 320 + y * 320..][..320]
                    .iter()
                    .all(|&v| is_pad(v))
            })
        })
        .collect();
    let expected: Vec<usize> = (0..40).chain(279..320).collect();
    assert_eq!(padded, expected);
    check_rgb(case);
}

#[test]
fn nv12_letterbox_centred() {
    check_nv12(ultralytics_like(NV12_CAPS));
}

#[test]
fn frames_pass_through_unchanged() {
    let case = yolox_like(RGB_CAPS);
    let info = video_info(case.caps);
    let pixels = noise(info.size(), 3);
    let out = harness(&case)
        .push_and_pull(gst::Buffer::from_slice(pixels.clone()))
        .unwrap();
    assert_eq!(out.map_readable().unwrap().as_slice(), &pixels[..]);
}
