//! The reference rasteriser: paints the primitives in order on a frame in
//! system memory, each over the ones before it.

use gst_video::prelude::*;

use super::layout::{Coverage, Prim};
use super::{Drawing, OverlayError, Target};

/// The component samples of `prim`'s rectangle in a plane subsampled by
/// `2^shift`: (sample x range, sample y range).
pub fn sample_ranges(prim: &Prim, shift: u32) -> (std::ops::Range<i32>, std::ops::Range<i32>) {
    (
        (prim.x0 >> shift)..((prim.x1 - 1) >> shift) + 1,
        (prim.y0 >> shift)..((prim.y1 - 1) >> shift) + 1,
    )
}

/// Draws `drawing` on `frame` (whose format `target` describes).
pub fn draw(
    frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    target: &Target,
    drawing: &Drawing,
) -> Result<(), OverlayError> {
    let prims = target.encode_all(drawing);
    let strides: Vec<usize> = frame.plane_stride().iter().map(|&s| s as usize).collect();
    for (k, comp) in target.components.iter().enumerate() {
        let stride = strides[comp.plane];
        let data = frame
            .plane_data_mut(comp.plane as u32)
            .map_err(|_| OverlayError::MapFailed)?;
        for prim in &prims {
            let (xs, ys) = sample_ranges(prim, comp.shift);
            for sy in ys {
                let row = sy as usize * stride + comp.offset;
                for sx in xs.clone() {
                    let value =
                        match prim.cover(&drawing.glyphs, sx << comp.shift, sy << comp.shift) {
                            Coverage::None => continue,
                            Coverage::Colour => prim.colour[k],
                            Coverage::Text => prim.text_colour[k],
                        };
                    data[row + sx as usize * comp.step] = value;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inferoverlay::draw::{class_colour, layout, Style};
    use crate::meta::detections::{Detection, FrameDetections};
    use gst_video::VideoFormat;

    /// A `format` frame of `w` x `h` filled with byte 7, a 10x8 box at
    /// (4, 6) of class 3 drawn on it with 2-pixel lines and no label.
    fn drawn(format: VideoFormat, w: u32, h: u32) -> (gst_video::VideoInfo, gst::Buffer) {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(format, w, h)
            .colorimetry(&"bt601".parse().unwrap())
            .build()
            .unwrap();
        let mut buffer = gst::Buffer::from_mut_slice(vec![7u8; info.size()]);
        let found = FrameDetections {
            detections: vec![Detection {
                class_id: 3,
                x: 4.0,
                y: 6.0,
                width: 10.0,
                height: 8.0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let style = Style {
            thickness: 2,
            show_labels: false,
            show_confidence: false,
            ..Default::default()
        };
        let drawing = layout(&found, &style, w, h);
        let target = Target::new(&info).unwrap();
        let mut frame =
            gst_video::VideoFrameRef::from_buffer_ref_writable(buffer.get_mut().unwrap(), &info)
                .unwrap();
        draw(&mut frame, &target, &drawing).unwrap();
        drop(frame);
        (info, buffer)
    }

    /// Whether (x, y) is on the edges of the box above (4..14 x 6..14).
    fn on_edge(x: usize, y: usize) -> bool {
        let inside_outer = (4..14).contains(&x) && (6..14).contains(&y);
        let inside_inner = (6..12).contains(&x) && (8..12).contains(&y);
        inside_outer && !inside_inner
    }

    #[test]
    fn rgb_edges_take_the_class_colour_and_nothing_else_changes() {
        let (info, buffer) = drawn(VideoFormat::Bgrx, 20, 16);
        let map = buffer.map_readable().unwrap();
        let stride = info.stride()[0] as usize;
        let [r, g, b] = class_colour(3);
        for y in 0..16 {
            for x in 0..20 {
                let px = &map[y * stride + 4 * x..][..4];
                let want = if on_edge(x, y) { [b, g, r, 7] } else { [7; 4] };
                assert_eq!(px, want, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn nv12_writes_luma_and_whole_chroma_blocks() {
        let (info, buffer) = drawn(VideoFormat::Nv12, 20, 16);
        let target = Target::new(&info).unwrap();
        let [yc, uc, vc] = target.encode(class_colour(3));
        let map = buffer.map_readable().unwrap();
        let (stride, uv_at) = (info.stride()[0] as usize, info.offset()[1]);
        for y in 0..16 {
            for x in 0..20 {
                let want = if on_edge(x, y) { yc } else { 7 };
                assert_eq!(map[y * stride + x], want, "luma ({x}, {y})");
            }
        }
        for sy in 0..8 {
            for sx in 0..10 {
                let uv = &map[uv_at + sy * info.stride()[1] as usize + 2 * sx..][..2];
                let want = if on_edge(2 * sx, 2 * sy) {
                    [uc, vc]
                } else {
                    [7, 7]
                };
                assert_eq!(uv, want, "chroma ({sx}, {sy})");
            }
        }
    }
}
