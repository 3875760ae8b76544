//! `inferoverlay` on real detections: dog.jpg through `cudapreprocess !
//! trtinfer ! tee`, one branch as it is (the input), one through
//! `inferoverlay`; the drawn frame is read back against the input. The
//! geometry the tests expect is the documented one (boxes on even pixels,
//! label above the box's top-left corner), computed here independently.
//! `gpu_overlay_equals_cpu_overlay` runs where there is a GPU
//! (scripts/gpu-overlay.sh) and prints that it is skipped elsewhere.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;
use gst_video::prelude::*;
use gstcudainfer::internals::class_colour;
use gstcudainfer::{Detection, FrameDetections, Track};

/// Frames (with their caps) that reached each named appsink.
type Sinks = HashMap<String, Vec<gst::Sample>>;

/// Runs `description` to the end, keeping every sample of the appsinks
/// `names`; fails the test on a pipeline error.
fn run_sinks(description: &str, names: &[&str]) -> Sinks {
    let ended = try_run_sinks(description, names, |_| {});
    assert_eq!(ended.1, None, "the pipeline failed");
    ended.0
}

/// As [`run_sinks`], calling `prepare` (to feed an appsrc, say) before it
/// plays; returns the first error instead of failing.
fn try_run_sinks(
    description: &str,
    names: &[&str],
    prepare: impl FnOnce(&gst::Pipeline),
) -> (Sinks, Option<String>) {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let store = Arc::new(Mutex::new(Sinks::new()));
    for &name in names {
        let sink = pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        sink.set_property("sync", false);
        let (store, name) = (store.clone(), name.to_string());
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    store
                        .lock()
                        .unwrap()
                        .entry(name.clone())
                        .or_default()
                        .push(sample);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    prepare(&pipeline);
    let ended = run_to_end(&pipeline);
    let sinks = std::mem::take(&mut *store.lock().unwrap());
    (sinks, ended.error)
}

/// dog.jpg as `format`, its detections, and the frame before and after
/// `inferoverlay {overlay}`.
fn dog_through_overlay(format: &str, infer: &str, overlay: &str) -> (gst::Sample, gst::Sample) {
    let sinks = run_sinks(
        &format!(
            "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format={format} \
             ! cudapreprocess ! trtinfer model={} labels={} {infer} ! tee name=t \
             t. ! queue ! appsink name=plain t. ! queue ! inferoverlay {overlay} ! appsink name=drawn",
            media("dog.jpg"),
            model(),
            labels()
        ),
        &["plain", "drawn"],
    );
    let one = |name: &str| {
        let samples = &sinks[name];
        assert_eq!(samples.len(), 1, "{name}: one frame");
        samples[0].clone()
    };
    (one("plain"), one("drawn"))
}

/// A frame read back: its three components (R, G, B or Y, U, V) at any
/// luma pixel, from whichever planes the format keeps them in.
struct Pixels {
    info: gst_video::VideoInfo,
    planes: Vec<Vec<u8>>,
}

impl Pixels {
    fn of(sample: &gst::Sample) -> Self {
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer().unwrap(), &info)
                .unwrap();
        // Repacked tightly, so two frames of different strides compare.
        let planes = (0..info.n_planes())
            .map(|p| {
                let (stride, data) = (
                    frame.plane_stride()[p as usize] as usize,
                    frame.plane_data(p).unwrap(),
                );
                let comp = (0..info.n_components() as u8)
                    .find(|&c| info.comp_plane(c) == p)
                    .unwrap();
                let row = info.comp_width(comp) as usize * info.comp_pstride(comp) as usize;
                (0..info.comp_height(comp) as usize)
                    .flat_map(|y| data[y * stride..y * stride + row].to_vec())
                    .collect()
            })
            .collect();
        Self { info, planes }
    }

    fn yuv(&self) -> bool {
        self.info.format_info().is_yuv()
    }

    /// (plane, byte) of component `k` at luma pixel (x, y).
    fn at(&self, k: usize, x: usize, y: usize) -> (usize, usize) {
        let info = &self.info;
        let c = k as u8;
        let plane = info.comp_plane(c) as usize;
        let (sub_x, sub_y) = if self.yuv() && k > 0 {
            (x / 2, y / 2)
        } else {
            (x, y)
        };
        let stride = (0..info.n_components() as u8)
            .filter(|&d| info.comp_plane(d) as usize == plane)
            .map(|d| info.comp_width(d) as usize * info.comp_pstride(d) as usize)
            .max()
            .unwrap();
        (
            plane,
            sub_y * stride + sub_x * info.comp_pstride(c) as usize + info.comp_poffset(c) as usize,
        )
    }

    fn get(&self, k: usize, x: usize, y: usize) -> u8 {
        let (p, i) = self.at(k, x, y);
        self.planes[p][i]
    }

    fn size(&self) -> (usize, usize) {
        (self.info.width() as usize, self.info.height() as usize)
    }
}

/// `rgb` as the frame's components, by the textbook formulas for its
/// colour matrix and range (independent of the element's code).
fn expected_components(info: &gst_video::VideoInfo, rgb: [u8; 3]) -> [f64; 3] {
    if !info.format_info().is_yuv() {
        return rgb.map(f64::from);
    }
    let c = info.colorimetry();
    let (kr, kb) = match c.matrix() {
        gst_video::VideoColorMatrix::Bt709 => (0.2126, 0.0722),
        gst_video::VideoColorMatrix::Bt601 => (0.299, 0.114),
        other => panic!("the test knows BT.601 and BT.709, the frame is {other:?}"),
    };
    let [r, g, b] = rgb.map(f64::from);
    let y = kr * r + (1.0 - kr - kb) * g + kb * b;
    let (cb, cr) = ((b - y) / (2.0 * (1.0 - kb)), (r - y) / (2.0 * (1.0 - kr)));
    if c.range() == gst_video::VideoColorRange::Range0_255 {
        [y, (128.0 + cb).min(255.0), (128.0 + cr).min(255.0)]
    } else {
        [
            16.0 + y * 219.0 / 255.0,
            128.0 + cb * 224.0 / 255.0,
            128.0 + cr * 224.0 / 255.0,
        ]
    }
}

/// The documented geometry: a box covers [even floor of x, even ceil of
/// x + width), the same for y.
fn snapped(d: &Detection) -> [usize; 4] {
    let down = |v: f32| (v.floor() as usize) & !1;
    let up = |v: f32| {
        let c = v.ceil() as usize;
        c + (c & 1)
    };
    [down(d.x), down(d.y), up(d.x + d.width), up(d.y + d.height)]
}

/// Default look: 4-pixel lines, 16-pixel letters, 2 pixels of padding.
const THICKNESS: usize = 4;
const LETTER: usize = 16;
const PAD: usize = 2;

/// The label rectangle of `d` with `chars` characters: above the box's
/// top-left corner, moved left if it would leave the frame.
fn label_rect(d: &Detection, chars: usize, width: usize) -> [usize; 4] {
    let [x0, y0, ..] = snapped(d);
    let (w, h) = (chars * LETTER + 2 * PAD, LETTER + 2 * PAD);
    let x = x0.min((width - w) & !1);
    let y = if y0 >= h { y0 - h } else { y0 };
    [x, y, x + w, y + h]
}

fn label_chars(d: &Detection) -> usize {
    format!("{} {:.2}", d.label, d.confidence).len()
}

/// What a drawn dog.jpg frame must show, in `format`.
fn check_drawn(format: &str) {
    let (plain, drawn) = dog_through_overlay(format, "", "");
    let found = FrameDetections::from_buffer(drawn.buffer().unwrap()).unwrap();
    let labels: Vec<&str> = found.detections.iter().map(|d| d.label.as_str()).collect();
    println!(
        "{format}: {:?}",
        found
            .detections
            .iter()
            .map(|d| (&d.label, d.confidence, snapped(d)))
            .collect::<Vec<_>>()
    );
    assert!(
        ["dog", "bicycle", "car"].iter().all(|l| labels.contains(l)),
        "{format}: {labels:?}"
    );
    let (input, output) = (Pixels::of(&plain), Pixels::of(&drawn));
    let (w, h) = output.size();
    let tolerance = if output.yuv() { 1.0 } else { 0.0 };
    // 1. The middle of each box's left, right and bottom edges (the top
    //    edge carries the label) has the colour of the last box drawn
    //    there: boxes are painted in the detections' order (the cat's box
    //    lies on the dog's), labels over them (points under one are left
    //    out).
    let band = |d: &Detection, x: usize, y: usize| {
        let [x0, y0, x1, y1] = snapped(d);
        let t = THICKNESS;
        let outer = (x0..x1).contains(&x) && (y0..y1).contains(&y);
        let inner = (x0 + t..x1 - t).contains(&x) && (y0 + t..y1 - t).contains(&y);
        outer && !inner
    };
    let under_label = |x: usize, y: usize| {
        found.detections.iter().any(|d| {
            let [x0, y0, x1, y1] = label_rect(d, label_chars(d), w);
            (x0..x1).contains(&x) && (y0..y1).contains(&y)
        })
    };
    let mut edge_points = 0;
    for d in &found.detections {
        let [x0, y0, x1, y1] = snapped(d);
        let (xm, ym) = (((x0 + x1) / 2) & !1, ((y0 + y1) / 2) & !1);
        for (x, y) in [(x0 + 1, ym), (x1 - 2, ym), (xm, y1 - 2)] {
            if under_label(x, y) {
                continue;
            }
            let last = found
                .detections
                .iter()
                .rev()
                .find(|o| band(o, x, y))
                .unwrap();
            let want = expected_components(&output.info, class_colour(last.class_id));
            for (k, want) in want.into_iter().enumerate() {
                let got = output.get(k, x, y) as f64;
                assert!(
                    (got - want).abs() <= tolerance,
                    "{format} {} edge: component {k} at ({x}, {y}) is {got}, the colour of {}'s box is {want}",
                    d.label,
                    last.label,
                );
            }
            edge_points += 1;
        }
    }
    println!("{format}: {edge_points} edge points in the class colour");
    assert!(
        edge_points >= 3 * 3,
        "{format}: too few edge points checked"
    );
    // 2. Every pixel outside the boxes' edge bands and label areas (each
    //    widened by 2 pixels) is as in the input, inside boxes as outside.
    let touched = |x: usize, y: usize| {
        found.detections.iter().any(|d| {
            let [x0, y0, x1, y1] = snapped(d);
            let (x, y) = (x as isize, y as isize);
            let [x0, y0, x1, y1] = [x0, y0, x1, y1].map(|v| v as isize);
            let m = 2;
            let t = (THICKNESS as isize) + m;
            let outer = x >= x0 - m && x < x1 + m && y >= y0 - m && y < y1 + m;
            let inner = x >= x0 + t && x < x1 - t && y >= y0 + t && y < y1 - t;
            let [lx0, ly0, lx1, ly1] = label_rect(d, label_chars(d), w).map(|v| v as isize);
            let label = x >= lx0 - m && x < lx1 + m && y >= ly0 - m && y < ly1 + m;
            (outer && !inner) || label
        })
    };
    let (mut compared, mut inside, mut changed) = (0usize, 0usize, 0usize);
    for y in 0..h {
        for x in 0..w {
            if touched(x, y) {
                continue;
            }
            compared += 1;
            if found.detections.iter().any(|d| {
                let [x0, y0, x1, y1] = snapped(d);
                (x0..x1).contains(&x) && (y0..y1).contains(&y)
            }) {
                inside += 1;
            }
            // Chroma of a 2x2 block is read at its top-left pixel only.
            let ks = if output.yuv() && (x % 2 == 1 || y % 2 == 1) {
                0..1
            } else {
                0..3
            };
            if ks
                .into_iter()
                .any(|k| output.get(k, x, y) != input.get(k, x, y))
            {
                changed += 1;
            }
        }
    }
    println!("{format}: {compared} of {} pixels outside the drawing compared ({inside} inside boxes), {changed} changed", w * h);
    assert_eq!(changed, 0, "{format}: pixels away from the drawing changed");
    assert!(
        compared > w * h * 6 / 10 && inside > w * h / 5,
        "{format}: {compared} compared, {inside} inside"
    );
    // 3. Each label's area is mostly painted over (background and text).
    for d in &found.detections {
        let [x0, y0, x1, y1] = label_rect(d, label_chars(d), w);
        let area = (x1 - x0) * (y1 - y0);
        let differ = (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| output.get(0, x, y) != input.get(0, x, y))
            .count();
        println!(
            "{format} {}: label {x0},{y0} {}x{}: {differ} of {area} pixels differ",
            d.label,
            x1 - x0,
            y1 - y0
        );
        assert!(
            differ * 2 > area,
            "{format} {}: the label area is not drawn",
            d.label
        );
    }
}

#[test]
fn rgb_boxes_and_labels_on_dog_jpg() {
    check_drawn("RGB");
}

#[test]
fn nv12_boxes_and_labels_on_dog_jpg() {
    check_drawn("NV12");
}

#[test]
fn i420_boxes_and_labels_on_dog_jpg() {
    check_drawn("I420");
}

#[test]
fn frames_without_detections_pass_bit_for_bit() {
    for format in ["RGB", "NV12", "I420"] {
        // Nothing of dog.jpg scores above 0.99.
        let (plain, drawn) = dog_through_overlay(format, "confidence-threshold=0.99", "");
        let found = FrameDetections::from_buffer(drawn.buffer().unwrap()).unwrap();
        assert!(found.detections.is_empty());
        let (a, b) = (
            plain.buffer().unwrap().map_readable().unwrap(),
            drawn.buffer().unwrap().map_readable().unwrap(),
        );
        assert!(a.as_slice() == b.as_slice(), "{format}: the frame changed");
    }
}

/// A 320x240 grey `format` frame in `features` memory carrying `found`,
/// through `inferoverlay {props}`: the frame that comes out, or the error.
fn synthetic(
    format: gst_video::VideoFormat,
    features: &str,
    found: FrameDetections,
    props: &str,
) -> (Option<gst::Sample>, Option<String>) {
    init();
    let info = gst_video::VideoInfo::builder(format, 320, 240)
        .build()
        .unwrap();
    let mut buffer = gst::Buffer::from_mut_slice(vec![100u8; info.size()]);
    found.attach(buffer.get_mut().unwrap());
    let mut caps = info.to_caps().unwrap();
    if !features.is_empty() {
        caps.get_mut()
            .unwrap()
            .set_features_simple(Some(gst::CapsFeatures::new([features])));
    }
    let (mut sinks, error) = try_run_sinks(
        &format!("appsrc name=src format=time ! inferoverlay {props} ! appsink name=drawn"),
        &["drawn"],
        |pipeline| feed(pipeline, "src", &caps, &[buffer], true),
    );
    (sinks.remove("drawn").and_then(|mut s| s.pop()), error)
}

fn tracked_dog() -> FrameDetections {
    FrameDetections {
        detections: vec![Detection {
            class_id: 16,
            label: "dog".into(),
            confidence: 0.9,
            x: 40.0,
            y: 100.0,
            width: 100.0,
            height: 100.0,
            track: Some(Track {
                id: 42,
                ..Default::default()
            }),
            ..Default::default()
        }],
        frame_width: 320,
        frame_height: 240,
        ..Default::default()
    }
}

/// The columns (first, last + 1) where the rows of the label above the box
/// (y 80..100) differ from the grey input, if any.
fn label_columns(props: &str) -> Option<(usize, usize)> {
    let (sample, error) = synthetic(gst_video::VideoFormat::Rgb, "", tracked_dog(), props);
    assert_eq!(error, None);
    let out = Pixels::of(&sample.unwrap());
    let columns: Vec<usize> = (0..320)
        .filter(|&x| (80..100).any(|y| (0..3).any(|k| out.get(k, x, y) != 100)))
        .collect();
    Some((*columns.first()?, columns.last()? + 1))
}

#[test]
fn properties_choose_what_the_label_says() {
    // "dog 0.90 #42": 12 letters of 16 pixels and 2 + 2 pixels of padding,
    // from the box's left edge (x 40).
    assert_eq!(label_columns(""), Some((40, 40 + 12 * 16 + 4)));
    // "dog 0.90"
    assert_eq!(
        label_columns("show-track-id=false"),
        Some((40, 40 + 8 * 16 + 4))
    );
    // "dog", letters of 8 pixels
    assert_eq!(
        label_columns("show-track-id=false show-confidence=false text-scale=1"),
        // The label is 12 pixels high then: rows 88..100.
        Some((40, 40 + 3 * 8 + 4))
    );
    // "#42"
    assert_eq!(
        label_columns("show-labels=false show-confidence=false"),
        Some((40, 40 + 3 * 16 + 4))
    );
    // Nothing to say: no label, only the box (which starts at row 100).
    assert_eq!(
        label_columns("show-labels=false show-confidence=false show-track-id=false"),
        None
    );
}

#[test]
fn line_thickness_sets_the_box_lines() {
    for (thickness, drawn) in [(2, 2), (3, 4), (8, 8)] {
        let (sample, error) = synthetic(
            gst_video::VideoFormat::Bgrx,
            "",
            tracked_dog(),
            &format!("line-thickness={thickness}"),
        );
        assert_eq!(error, None);
        let out = Pixels::of(&sample.unwrap());
        // The left edge at mid-height (y 150): columns 40.. in the class colour.
        let width = (40..140)
            .take_while(|&x| {
                (0..3).all(|k| {
                    out.get(k, x, 150) as f64 == expected_components(&out.info, class_colour(16))[k]
                })
            })
            .count();
        assert_eq!(width, drawn, "line-thickness={thickness}");
    }
}

#[test]
fn cuda_memory_without_cuda_is_a_clear_error() {
    let (_, error) = synthetic(
        gst_video::VideoFormat::Nv12,
        gstcudainfer::CUDA_MEMORY_FEATURE,
        tracked_dog(),
        "",
    );
    let error = error.expect("a system-memory frame claiming CUDA memory fails");
    if gstcudainfer::cuda::device::driver_present() {
        assert!(
            error.contains("the caps say memory:CUDAMemory but the frame is not in CUDA memory"),
            "{error}"
        );
    } else {
        assert!(
            error.contains("there is no CUDA driver on this machine")
                && error.contains("give inferoverlay system memory"),
            "{error}"
        );
    }
}

/// Frames of one appsink waiting for their twin of the other, by timestamp.
#[derive(Default)]
struct Twins {
    waiting: [HashMap<u64, gst::Sample>; 2],
    stats: Difference,
}

/// How the GPU-drawn frames differ from the CPU-drawn ones.
#[derive(Default, Debug, Clone, Copy)]
struct Difference {
    frames: usize,
    detections: usize,
    bytes: usize,
    differing: usize,
    max: u8,
    sum: u64,
}

impl Difference {
    fn add(&mut self, gpu: &gst::Sample, cpu: &gst::Sample) {
        let (g, c) = (Pixels::of(gpu), Pixels::of(cpu));
        let found = |s: &gst::Sample| FrameDetections::from_buffer(s.buffer().unwrap());
        let (gd, cd) = (
            found(gpu).expect("GPU frames carry detections"),
            found(cpu).expect(
                "CPU frames carry detections (cudadownload keeps GstCudaInferDetectionsMeta)",
            ),
        );
        assert_eq!(
            gd.detections, cd.detections,
            "both branches draw the same detections"
        );
        self.frames += 1;
        self.detections += gd.detections.len();
        for (a, b) in g.planes.iter().flatten().zip(c.planes.iter().flatten()) {
            let d = a.abs_diff(*b);
            self.bytes += 1;
            self.differing += (d > 0) as usize;
            self.max = self.max.max(d);
            self.sum += d as u64;
        }
    }
}

fn gpu_available() -> bool {
    init();
    let ready = gstcudainfer::cuda::device::driver_present()
        && ["nvh264dec", "cudadownload"]
            .iter()
            .all(|e| gst::ElementFactory::find(e).is_some());
    if !ready {
        eprintln!("skipped: needs a CUDA device, nvh264dec and cudadownload");
    }
    ready
}

/// dog_1080p.mp4 decoded by nvh264dec, `convert`ed on the GPU, inferred on
/// the GPU, then drawn by inferoverlay on the CUDA frame (then downloaded)
/// and, after cudadownload, on a system-memory copy of the same frame with
/// the same metas: every byte of the two compared.
fn gpu_against_cpu(convert: &str) -> Difference {
    let queue = "queue max-size-buffers=4 max-size-bytes=0 max-size-time=0";
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! nvh264dec {convert} ! cudapreprocess          ! trtinfer model={} labels={} providers=cuda ! tee name=t          t. ! {queue} ! inferoverlay ! cudadownload ! video/x-raw ! appsink name=gpu sync=false          t. ! {queue} ! cudadownload ! video/x-raw ! inferoverlay ! appsink name=cpu sync=false",
        media("dog_1080p.mp4"),
        model(),
        labels()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let twins = Arc::new(Mutex::new(Twins::default()));
    for (side, name) in ["gpu", "cpu"].into_iter().enumerate() {
        let twins = twins.clone();
        pipeline
            .by_name(name)
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap()
            .set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |s| {
                        let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let pts = sample.buffer().unwrap().pts().unwrap().nseconds();
                        let mut t = twins.lock().unwrap();
                        match t.waiting[1 - side].remove(&pts) {
                            Some(twin) => {
                                let (gpu, cpu) = if side == 0 {
                                    (&sample, &twin)
                                } else {
                                    (&twin, &sample)
                                };
                                t.stats.add(gpu, cpu);
                            }
                            None => {
                                t.waiting[side].insert(pts, sample);
                            }
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
    }
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None, "the pipeline failed");
    let t = twins.lock().unwrap();
    assert!(
        t.waiting.iter().all(|w| w.is_empty()),
        "frames reached one branch only"
    );
    t.stats
}

/// The CUDA overlay against the CPU overlay on the same frames: NV12 as
/// nvh264dec gives it, and (where cudaconvert exists) I420 and RGBA.
#[test]
fn gpu_overlay_equals_cpu_overlay() {
    if !gpu_available() {
        return;
    }
    let mut formats = vec![("NV12", String::new())];
    if gst::ElementFactory::find("cudaconvert").is_some() {
        for f in ["I420", "RGBA", "BGRx"] {
            formats.push((
                f,
                format!("! cudaconvert ! video/x-raw(memory:CUDAMemory),format={f}"),
            ));
        }
    }
    for (format, convert) in formats {
        let d = gpu_against_cpu(&convert);
        let share = d.differing as f64 / d.bytes.max(1) as f64;
        println!(
            "VERDICT overlay-{format} frames={} detections={} max_diff={} mean_diff={:.6} differing_share={share:.6}",
            d.frames,
            d.detections,
            d.max,
            d.sum as f64 / d.bytes.max(1) as f64
        );
        assert!(d.frames >= 290, "{format}: {} frames compared", d.frames);
        assert!(
            d.detections >= 3 * d.frames,
            "{format}: dog, bicycle and car in every frame"
        );
        assert_eq!(
            d.max, 0,
            "{format}: the CUDA overlay differs from the CPU overlay"
        );
    }
}
