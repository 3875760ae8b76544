//! What the overlay draws, decided once per frame on the host: a list of
//! primitives (filled rectangles and text labels) that the CPU and the CUDA
//! rasterisers both paint with [`Prim::cover`], in list order, the later
//! over the earlier. Pixel geometry exists only here.
//!
//! Every coordinate is snapped to even pixels, so that a primitive covers
//! whole 2x2 blocks and 4:2:0 chroma gets the colour exactly, and every
//! format draws the same pixels.

use crate::meta::detections::{Detection, FrameDetections};

/// Glyph cell of the embedded font (font8x8), in font pixels.
pub const GLYPH: i32 = 8;
/// Space between a label's edge and its text, in frame pixels.
pub const LABEL_PADDING: i32 = 2;
/// Longer labels are cut: a label wider than the frame helps nobody.
pub const MAX_LABEL_CHARS: usize = 64;

/// A predicted box's dashes and gaps, in line widths (even, so dashes
/// stay on even pixels).
const DASH_ON: i32 = 4;
const DASH_OFF: i32 = 2;

/// A filled rectangle in one colour.
pub const KIND_RECT: i32 = 0;
/// A filled rectangle in one colour with text in another on it.
pub const KIND_LABEL: i32 = 1;

/// How the objects are drawn (the element's properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Box line width in pixels, rounded up to even.
    pub thickness: u32,
    /// Each font pixel is `text_scale` x `text_scale` frame pixels.
    pub text_scale: u32,
    pub show_labels: bool,
    pub show_confidence: bool,
    pub show_track_id: bool,
}

impl Default for Style {
    fn default() -> Self {
        Self {
            thickness: 4,
            text_scale: 2,
            show_labels: true,
            show_confidence: true,
            show_track_id: true,
        }
    }
}

/// One primitive. Its rectangle `[x0, x1) x [y0, y1)` is inside the frame
/// and not empty. Colours are RGB until [`super::Target::encode`] turns
/// them into the frame's components. The layout mirrors `Prim` in
/// overlay.cu (see [`Prim::words`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prim {
    pub kind: i32,
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
    pub colour: [u8; 3],
    pub text_colour: [u8; 3],
    /// Top-left pixel of the first glyph (labels).
    pub text_x: i32,
    pub text_y: i32,
    pub scale: i32,
    /// First glyph in [`Drawing::glyphs`] (8 rows of 8 bits each) and count.
    pub glyph_at: i32,
    pub glyph_count: i32,
}

/// Whether a pixel is covered, and by what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    None,
    Colour,
    Text,
}

impl Prim {
    /// Which of its colours the primitive gives pixel (`x`, `y`). The CUDA
    /// kernel's `cover` is this function, line for line.
    #[inline]
    pub fn cover(&self, glyphs: &[u8], x: i32, y: i32) -> Coverage {
        if x < self.x0 || x >= self.x1 || y < self.y0 || y >= self.y1 {
            return Coverage::None;
        }
        if self.kind == KIND_RECT {
            return Coverage::Colour;
        }
        let cell = GLYPH * self.scale;
        let (dx, dy) = (x - self.text_x, y - self.text_y);
        if dx < 0 || dy < 0 || dy >= cell || dx / cell >= self.glyph_count {
            return Coverage::Colour;
        }
        let row = glyphs[((self.glyph_at + dx / cell) * GLYPH + dy / self.scale) as usize];
        // font8x8 rows: bit 0 is the leftmost pixel.
        if (row >> ((dx % cell) / self.scale)) & 1 == 1 {
            Coverage::Text
        } else {
            Coverage::Colour
        }
    }

    /// Whether the rectangles of `self` and `other` share a pixel.
    pub fn overlaps(&self, other: &Prim) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }
}

/// A frame's primitives, in painting order, and the glyph rows they use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drawing {
    pub prims: Vec<Prim>,
    pub glyphs: Vec<u8>,
}

impl Drawing {
    pub fn is_empty(&self) -> bool {
        self.prims.is_empty()
    }
}

/// 20 colours that stay apart from each other (Sasha Trubetskoy's list),
/// one per class id modulo 20.
const PALETTE: [[u8; 3]; 20] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [220, 190, 255],
    [170, 110, 40],
    [255, 250, 200],
    [128, 0, 0],
    [170, 255, 195],
    [128, 128, 0],
    [255, 215, 180],
    [0, 0, 128],
    [128, 128, 128],
];

/// The RGB colour of class `class_id`'s boxes and label backgrounds.
pub fn class_colour(class_id: u32) -> [u8; 3] {
    PALETTE[class_id as usize % PALETTE.len()]
}

/// Black text on light colours, white on dark ones.
fn text_colour_on(background: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = background.map(f32::from);
    if 0.299 * r + 0.587 * g + 0.114 * b > 150.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    }
}

/// The text of an object's label, as the style asks: its class, confidence,
/// track id and the top class of its crop, e.g. `dog 0.87 #12 | poodle 0.66`.
pub fn label_text(d: &Detection, style: &Style) -> String {
    let mut parts = Vec::new();
    if d.predicted {
        // A prediction's confidence is its last detection's.
        parts.push("~".to_string());
    }
    if style.show_labels {
        parts.push(d.label.clone());
    }
    if style.show_confidence {
        parts.push(format!("{:.2}", d.confidence));
    }
    if let (true, Some(track)) = (style.show_track_id, d.track) {
        parts.push(format!("#{}", track.id));
    }
    if let Some(top) = d.classifications.first() {
        let mut class = Vec::new();
        if style.show_labels {
            class.push(top.label.clone());
        }
        if style.show_confidence {
            class.push(format!("{:.2}", top.confidence));
        }
        if !class.is_empty() {
            parts.push(format!("| {}", class.join(" ")));
        }
    }
    parts.join(" ")
}

fn even_down(v: f32) -> i32 {
    (v.floor() as i32).div_euclid(2) * 2
}

fn even_up(v: f32) -> i32 {
    let c = v.ceil() as i32;
    c + (c & 1)
}

/// Builds the primitives of one frame.
struct Builder<'a> {
    style: &'a Style,
    /// The frame's size, rounded down to even.
    width: i32,
    height: i32,
    drawing: Drawing,
}

impl Builder<'_> {
    /// Adds a rectangle clipped to the frame; nothing if nothing is left.
    fn rect(&mut self, (x0, y0, x1, y1): (i32, i32, i32, i32), colour: [u8; 3]) {
        let prim = Prim {
            kind: KIND_RECT,
            x0: x0.max(0),
            y0: y0.max(0),
            x1: x1.min(self.width),
            y1: y1.min(self.height),
            colour,
            ..Default::default()
        };
        if prim.x0 < prim.x1 && prim.y0 < prim.y1 {
            self.drawing.prims.push(prim);
        }
    }

    /// The four edges of a box (x0, y0, x1, y1 snapped and inside the frame).
    fn frame_box(&mut self, (x0, y0, x1, y1): (i32, i32, i32, i32), colour: [u8; 3]) {
        let t = (self.style.thickness.max(1) as i32 + 1) & !1;
        self.rect((x0, y0, x1, (y0 + t).min(y1)), colour);
        self.rect((x0, (y1 - t).max(y0), x1, y1), colour);
        self.rect((x0, y0, (x0 + t).min(x1), y1), colour);
        self.rect(((x1 - t).max(x0), y0, x1, y1), colour);
    }

    /// The four edges of a box as dashes: a predicted box (a frame that was
    /// not inferred), told apart from a detection at a glance.
    fn dashed_box(&mut self, (x0, y0, x1, y1): (i32, i32, i32, i32), colour: [u8; 3]) {
        let t = (self.style.thickness.max(1) as i32 + 1) & !1;
        let (on, period) = (DASH_ON * t, (DASH_ON + DASH_OFF) * t);
        let mut x = x0;
        while x < x1 {
            let end = (x + on).min(x1);
            self.rect((x, y0, end, (y0 + t).min(y1)), colour);
            self.rect((x, (y1 - t).max(y0), end, y1), colour);
            x += period;
        }
        let mut y = y0;
        while y < y1 {
            let end = (y + on).min(y1);
            self.rect((x0, y, (x0 + t).min(x1), end), colour);
            self.rect(((x1 - t).max(x0), y, x1, end), colour);
            y += period;
        }
    }

    /// A label whose bottom-left corner is at (`x`, `top`) when there is
    /// room above `top`, else whose top-left corner is there.
    fn label(&mut self, text: &str, x: i32, top: i32, colour: [u8; 3]) {
        let scale = self.style.text_scale.max(1) as i32;
        let chars: Vec<u8> = text
            .chars()
            .take(MAX_LABEL_CHARS)
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c as u8
                } else {
                    b'?'
                }
            })
            .collect();
        if chars.is_empty() {
            return;
        }
        let w = chars.len() as i32 * GLYPH * scale + 2 * LABEL_PADDING;
        let h = GLYPH * scale + 2 * LABEL_PADDING;
        let y = if top - h >= 0 { top - h } else { top };
        let y = y.min(self.height - h).max(0);
        let x = x.min((self.width - w) & !1).max(0);
        let glyph_at = (self.drawing.glyphs.len() / GLYPH as usize) as i32;
        for &c in &chars {
            self.drawing
                .glyphs
                .extend_from_slice(&font8x8::legacy::BASIC_LEGACY[c as usize]);
        }
        let prim = Prim {
            kind: KIND_LABEL,
            x0: x,
            y0: y,
            x1: (x + w).min(self.width),
            y1: (y + h).min(self.height),
            colour,
            text_colour: text_colour_on(colour),
            text_x: x + LABEL_PADDING,
            text_y: y + LABEL_PADDING,
            scale,
            glyph_at,
            glyph_count: chars.len() as i32,
        };
        if prim.x0 < prim.x1 && prim.y0 < prim.y1 {
            self.drawing.prims.push(prim);
        }
    }
}

/// The box of `d` in even pixels, inside a `width` x `height` frame (both
/// even), or None when nothing of it is left.
pub fn snapped_box(d: &Detection, width: i32, height: i32) -> Option<(i32, i32, i32, i32)> {
    let x0 = even_down(d.x).clamp(0, width);
    let y0 = even_down(d.y).clamp(0, height);
    let x1 = even_up(d.x + d.width).clamp(0, width);
    let y1 = even_up(d.y + d.height).clamp(0, height);
    (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
}

/// What to draw on a `width` x `height` frame for `found`: every object's
/// box, then every object's label (so no box hides a label), then the
/// frame's top class (whole-frame classifiers) at the top-left corner.
pub fn layout(found: &FrameDetections, style: &Style, width: u32, height: u32) -> Drawing {
    let mut b = Builder {
        style,
        width: (width & !1) as i32,
        height: (height & !1) as i32,
        drawing: Drawing::default(),
    };
    let boxes: Vec<_> = found
        .detections
        .iter()
        .filter_map(|d| snapped_box(d, b.width, b.height).map(|r| (d, r)))
        .collect();
    for &(d, r) in &boxes {
        if d.predicted {
            b.dashed_box(r, class_colour(d.class_id));
        } else {
            b.frame_box(r, class_colour(d.class_id));
        }
    }
    for &(d, (x0, y0, _, _)) in &boxes {
        b.label(&label_text(d, style), x0, y0, class_colour(d.class_id));
    }
    if let Some(c) = found.classifications.first() {
        let as_object = Detection {
            label: c.label.clone(),
            confidence: c.confidence,
            ..Default::default()
        };
        b.label(
            &label_text(&as_object, style),
            0,
            0,
            class_colour(c.class_id),
        );
    }
    b.drawing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::detections::{Classification, Track};

    fn dog() -> Detection {
        Detection {
            class_id: 16,
            label: "dog".into(),
            confidence: 0.873,
            x: 101.4,
            y: 50.6,
            width: 200.2,
            height: 99.0,
            ..Default::default()
        }
    }

    #[test]
    fn labels_say_what_the_style_asks() {
        let mut d = dog();
        assert_eq!(label_text(&d, &Style::default()), "dog 0.87");
        d.track = Some(Track {
            id: 12,
            ..Default::default()
        });
        d.classifications = vec![Classification {
            class_id: 3,
            label: "poodle".into(),
            confidence: 0.661,
        }];
        assert_eq!(
            label_text(&d, &Style::default()),
            "dog 0.87 #12 | poodle 0.66"
        );
        let quiet = Style {
            show_confidence: false,
            show_track_id: false,
            ..Default::default()
        };
        assert_eq!(label_text(&d, &quiet), "dog | poodle");
        let none = Style {
            show_labels: false,
            show_confidence: false,
            show_track_id: false,
            ..Default::default()
        };
        assert_eq!(label_text(&d, &none), "");
    }

    #[test]
    fn boxes_snap_to_even_pixels_and_stay_in_the_frame() {
        // 101.4..301.6 x 50.6..149.6 -> 100..302 x 50..150
        assert_eq!(snapped_box(&dog(), 640, 480), Some((100, 50, 302, 150)));
        let mut outside = dog();
        outside.x = -20.0;
        outside.width = 700.0;
        assert_eq!(snapped_box(&outside, 640, 480), Some((0, 50, 640, 150)));
        outside.x = 700.0;
        assert_eq!(snapped_box(&outside, 640, 480), None);
    }

    #[test]
    fn a_box_is_four_edges_then_its_label_above_it() {
        let found = FrameDetections {
            detections: vec![dog()],
            ..Default::default()
        };
        let style = Style::default();
        let d = layout(&found, &style, 641, 481);
        let rects: Vec<_> = d
            .prims
            .iter()
            .map(|p| (p.kind, p.x0, p.y0, p.x1, p.y1))
            .collect();
        // "dog 0.87": 8 glyphs of 16 px, 2 px padding.
        assert_eq!(
            rects,
            [
                (KIND_RECT, 100, 50, 302, 54),
                (KIND_RECT, 100, 146, 302, 150),
                (KIND_RECT, 100, 50, 104, 150),
                (KIND_RECT, 298, 50, 302, 150),
                (KIND_LABEL, 100, 30, 100 + 8 * 16 + 4, 50),
            ]
        );
        assert!(d.prims.iter().all(|p| p.colour == class_colour(16)));
        assert_eq!(d.glyphs.len(), 8 * 8);
        let label = d.prims[4];
        // Inside the padding: background; 'd' (font8x8) has its stem at
        // font column 3 and 4 from the top row on.
        assert_eq!(label.cover(&d.glyphs, 100, 30), Coverage::Colour);
        assert_eq!(label.cover(&d.glyphs, 102 + 3 * 2, 32), Coverage::Text);
        assert_eq!(label.cover(&d.glyphs, 102, 32), Coverage::Colour);
        assert_eq!(label.cover(&d.glyphs, 99, 32), Coverage::None);
        // No room above: the label goes inside the box's top.
        let mut high = dog();
        high.y = 4.0;
        let found = FrameDetections {
            detections: vec![high],
            ..Default::default()
        };
        let d = layout(&found, &style, 640, 480);
        assert_eq!((d.prims[4].y0, d.prims[4].y1), (4, 24));
    }

    #[test]
    fn nothing_to_draw_without_results() {
        let d = layout(&FrameDetections::default(), &Style::default(), 640, 480);
        assert!(d.is_empty());
    }

    #[test]
    fn a_predicted_box_is_dashed() {
        let mut predicted = dog();
        predicted.predicted = true;
        let found = |d: Detection| FrameDetections {
            detections: vec![d],
            ..Default::default()
        };
        let style = Style::default();
        let solid = layout(&found(dog()), &style, 640, 480);
        let dashed = layout(&found(predicted.clone()), &style, 640, 480);
        let rects = |d: &Drawing| d.prims.iter().filter(|p| p.kind == KIND_RECT).count();
        assert_eq!(rects(&solid), 4);
        assert!(rects(&dashed) > 8, "{} dashes", rects(&dashed));
        // Every dash lies on one of the solid box's edges, and some of the
        // edge is left out.
        let covered = |d: &Drawing, x: i32, y: i32| {
            d.prims
                .iter()
                .any(|p| p.kind == KIND_RECT && p.cover(&d.glyphs, x, y) != Coverage::None)
        };
        let (x0, y0, x1, y1) = snapped_box(&predicted, 640, 480).unwrap();
        let top: Vec<bool> = (x0..x1).map(|x| covered(&dashed, x, y0)).collect();
        assert!(top.iter().any(|&c| c) && top.iter().any(|&c| !c));
        for y in y0..y1 {
            for x in x0..x1 {
                if covered(&dashed, x, y) {
                    assert!(covered(&solid, x, y), "({x}, {y}) off the box's edges");
                }
            }
        }
        assert!(label_text(&predicted, &style).starts_with("~ dog"));
    }
}
