//! The GstAnalytics relation meta `FrameDetections::attach` adds on
//! GStreamer >= 1.24: read back through GStreamer's analytics library, and
//! drawn by upstream's `objectdetectionoverlay`. Skipped, saying why, on
//! 1.22 (no analytics library).

mod common;

use common::*;
use gst_video::prelude::*;
use gstcudainfer::analytics::{self, Entry};
use gstcudainfer::{Classification, Detection, FrameDetections, Track, TrackState};

/// True (after printing why) when this GStreamer has no analytics library.
fn skip() -> bool {
    init();
    match analytics::available() {
        Ok(()) => false,
        Err(e) => {
            println!("skipped: {e}");
            true
        }
    }
}

fn yolox_dog_jpg(tail: &str) -> Run {
    let run = run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=RGBA ! cudapreprocess \
         ! trtinfer model={} labels={} {tail}",
        media("dog.jpg"),
        model(),
        labels()
    ));
    assert_eq!(run.error, None);
    assert_eq!(run.buffers.len(), 1);
    run
}

fn object_entry(d: &Detection) -> Entry {
    let (x, y, w, h) = d.pixel_box();
    Entry::Object {
        label: d.label.clone(),
        rect: (x as i32, y as i32, w as i32, h as i32),
        confidence: d.confidence,
    }
}

#[test]
fn relation_meta_holds_the_objects_of_dog_jpg() {
    if skip() {
        return;
    }
    let run = yolox_dog_jpg("! appsink name=sink");
    let found = &run.detections()[0];
    assert!(found.detections.len() >= 3, "dog, bicycle, car: {found:?}");
    let entries = analytics::entries(&run.buffers[0]).expect("a relation meta");
    let expected: Vec<Entry> = found.detections.iter().map(object_entry).collect();
    assert_eq!(entries, expected);
    for label in ["dog", "bicycle", "car"] {
        assert!(
            entries
                .iter()
                .any(|e| matches!(e, Entry::Object { label: l, .. } if l == label)),
            "no {label} among {entries:?}"
        );
    }
    println!("{} object entries: {entries:?}", entries.len());
}

#[test]
fn classes_and_tracks_relate_to_their_object() {
    if skip() {
        return;
    }
    let frame_duration = gst::ClockTime::from_nseconds(33_333_333);
    let object = |label: &str, x: f32, track: Track, classes: &[(&str, f32)]| Detection {
        class_id: 1,
        label: label.into(),
        confidence: 0.8,
        x,
        y: 20.4,
        width: 100.6,
        height: 50.0,
        classifications: classes
            .iter()
            .map(|&(label, confidence)| Classification {
                class_id: 7,
                label: label.into(),
                confidence,
            })
            .collect(),
        track: Some(track),
        predicted: false,
    };
    let frame = FrameDetections {
        model: "test".into(),
        detections: vec![
            object(
                "car",
                10.0,
                Track {
                    id: 42,
                    age: 3,
                    state: TrackState::Confirmed,
                },
                &[("red", 0.75), ("blue", 0.125)],
            ),
            object(
                "person",
                300.0,
                Track {
                    id: 43,
                    age: 0,
                    state: TrackState::Lost,
                },
                &[],
            ),
        ],
        classifications: vec![Classification {
            class_id: 3,
            label: "street".into(),
            confidence: 0.5,
        }],
        frame_width: 640,
        frame_height: 480,
        ..Default::default()
    };
    let mut buffer = gst::Buffer::new();
    let pts = gst::ClockTime::from_seconds(10);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(frame_duration);
        frame.clone().attach(b);
    }
    let entries = analytics::entries(&buffer).expect("a relation meta");
    let expected = vec![
        object_entry(&frame.detections[0]),
        Entry::Classes(vec![("red".into(), 0.75), ("blue".into(), 0.125)]),
        Entry::Track {
            id: 42,
            first_seen: Some(pts - frame_duration * 3),
            last_seen: Some(pts),
            lost: false,
        },
        object_entry(&frame.detections[1]),
        Entry::Track {
            id: 43,
            first_seen: Some(pts),
            last_seen: Some(pts),
            lost: true,
        },
        Entry::Classes(vec![("street".into(), 0.5)]),
    ];
    assert_eq!(entries, expected);
    // The box as the region-of-interest metas have it: rounded.
    assert!(matches!(
        entries[0],
        Entry::Object {
            rect: (10, 20, 101, 50),
            ..
        }
    ));
    // Object -> its classes and its track, and nothing else.
    let related: Vec<(u32, u32)> = (0..6)
        .flat_map(|a| (0..6).map(move |b| (a, b)))
        .filter(|&(a, b)| analytics::relates(&buffer, a, b))
        .collect();
    assert_eq!(related, vec![(0, 1), (0, 2), (3, 4)]);

    // A second element's edit: remove, change, attach again.
    let b = buffer.get_mut().unwrap();
    assert!(FrameDetections::remove_from(b));
    assert_eq!(analytics::entries(b), None);
    let mut edited = frame.clone();
    edited.detections.truncate(1);
    edited.classifications.clear();
    edited.attach(b);
    let entries = analytics::entries(b).expect("a relation meta");
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0], object_entry(&frame.detections[0]));
}

/// The fraction of the box's outline (x, y, w, h) where `changed` has a
/// pixel within `band` pixels of the line.
fn outline_coverage(
    changed: &dyn Fn(i64, i64) -> bool,
    (x, y, w, h): (i64, i64, i64, i64),
    band: i64,
) -> f64 {
    let near = |px: i64, py: i64, vertical: bool| {
        (-band..=band).any(|o| {
            if vertical {
                changed(px + o, py)
            } else {
                changed(px, py + o)
            }
        })
    };
    let mut points = Vec::new();
    for px in x..x + w {
        points.push(near(px, y, false));
        points.push(near(px, y + h, false));
    }
    for py in y..y + h {
        points.push(near(x, py, true));
        points.push(near(x + w, py, true));
    }
    points.iter().filter(|&&c| c).count() as f64 / points.len() as f64
}

#[test]
fn objectdetectionoverlay_draws_our_boxes() {
    if skip() {
        return;
    }
    if gst::ElementFactory::find("objectdetectionoverlay").is_none() {
        println!(
            "skipped: no objectdetectionoverlay (gst-plugins-bad >= 1.24, analyticsoverlay plugin)"
        );
        return;
    }
    // appsink with plain caps: the overlay must blend, not hand over a
    // composition meta.
    let sink = "appsink name=sink caps=video/x-raw,format=RGBA";
    let plain = yolox_dog_jpg(&format!("! {sink}"));
    let drawn = yolox_dog_jpg(&format!(
        "! objectdetectionoverlay draw-labels=false object-detection-outline-color=0xFFFF0000 ! {sink}"
    ));
    let found = &plain.detections()[0];
    let (width, height) = (found.frame_width, found.frame_height);
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgba, width, height)
        .build()
        .unwrap();
    let read = |b: &gst::Buffer| {
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(b, &info).unwrap();
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0).unwrap();
        (0..height as usize)
            .flat_map(|y| data[y * stride..y * stride + width as usize * 4].to_vec())
            .collect::<Vec<u8>>()
    };
    let (a, b) = (read(&plain.buffers[0]), read(&drawn.buffers[0]));
    let pixel = |img: &[u8], x: i64, y: i64| {
        let i = (y as usize * width as usize + x as usize) * 4;
        [img[i], img[i + 1], img[i + 2]]
    };
    let inside = |x: i64, y: i64| x >= 0 && y >= 0 && x < width as i64 && y < height as i64;
    // Red where the overlay drew: blended red has R well above G and B.
    let red = |x: i64, y: i64| {
        inside(x, y) && pixel(&a, x, y) != pixel(&b, x, y) && {
            let [r, g, bl] = pixel(&b, x, y);
            r as i32 > g as i32 + 60 && r as i32 > bl as i32 + 60
        }
    };
    let boxes: Vec<(i64, i64, i64, i64)> = found
        .detections
        .iter()
        .map(|d| {
            let (x, y, w, h) = d.pixel_box();
            (x as i64, y as i64, w as i64, h as i64)
        })
        .collect();
    for (d, &rect) in found.detections.iter().zip(&boxes) {
        let coverage = outline_coverage(&red, rect, 2);
        println!(
            "{} {rect:?}: {:.1} % of the outline red",
            d.label,
            coverage * 100.0
        );
        assert!(
            coverage >= 0.95,
            "{}: only {coverage} of its outline drawn",
            d.label
        );
    }
    // Nothing changed away from the outlines (more than 3 px off every one).
    let on_outline = |x: i64, y: i64| {
        boxes.iter().any(|&(bx, by, bw, bh)| {
            let near_v = (x - bx).abs() <= 3 || (x - bx - bw).abs() <= 3;
            let near_h = (y - by).abs() <= 3 || (y - by - bh).abs() <= 3;
            (near_v && y >= by - 3 && y <= by + bh + 3)
                || (near_h && x >= bx - 3 && x <= bx + bw + 3)
        })
    };
    let mut changed_on = 0;
    let mut changed_off = 0;
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            if pixel(&a, x, y) != pixel(&b, x, y) {
                if on_outline(x, y) {
                    changed_on += 1;
                } else {
                    changed_off += 1;
                }
            }
        }
    }
    println!("changed pixels: {changed_on} on the outlines, {changed_off} elsewhere");
    assert!(changed_on > 0);
    assert_eq!(changed_off, 0, "the overlay drew away from our boxes");
}
