//! `infertrack`: ids over the real clip, two streams, flushing seeks, and
//! a synthetic scene with known ground truth scored by MOTA and ID
//! switches.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;
use gst::prelude::*;
use gst_check::Harness;
use gstcudainfer::{Detection, FrameDetections, Track, TrackState};

/// The clip's main objects, by the labels YOLOX-nano gives them.
const MAIN_OBJECTS: [&[&str]; 3] = [&["dog"], &["bicycle"], &["car", "truck"]];

/// Frame duration of the 30 fps sources, ns.
const FRAME_NS: u64 = 1_000_000_000 / 30;

fn decode_and_detect() -> String {
    format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! cudapreprocess \
         ! trtinfer model={} labels={}",
        media("dog_1080p.mp4"),
        model(),
        labels()
    )
}

/// The track of each main object in each frame: the most confident
/// detection of its labels. Panics if a frame lacks one.
fn main_tracks(frames: &[Arc<FrameDetections>]) -> Vec<[Track; 3]> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            MAIN_OBJECTS.map(|labels| {
                let d = f
                    .detections
                    .iter()
                    .filter(|d| labels.contains(&d.label.as_str()))
                    .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
                    .unwrap_or_else(|| panic!("frame {i} has no {labels:?}: {:?}", f.detections));
                d.track
                    .unwrap_or_else(|| panic!("frame {i}: the {} has no track", d.label))
            })
        })
        .collect()
}

/// The clip through one detector and two trackers (a tee after
/// `trtinfer`): in each, every main object is matched to exactly one id
/// through all 300 frames (the most confident detection of its labels
/// carries that id in every frame, confirmed from the third frame on);
/// the two streams share no id and associate the same detections.
#[test]
fn clip_objects_keep_one_id_and_streams_share_none() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "{} ! tee name=split \
         split. ! queue ! infertrack ! appsink name=sink0 sync=false \
         split. ! queue ! infertrack ! appsink name=sink1 sync=false",
        decode_and_detect()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let received = [
        collect_detections(&pipeline, "sink0"),
        collect_detections(&pipeline, "sink1"),
    ];
    let started = Instant::now();
    assert_eq!(run_to_end(&pipeline).error, None);
    eprintln!(
        "300 frames decoded, detected and tracked twice in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let streams: Vec<Vec<Arc<FrameDetections>>> = received
        .iter()
        .map(|r| r.lock().unwrap().iter().map(|(_, d)| d.clone()).collect())
        .collect();
    let mut all_ids = Vec::new();
    for (s, frames) in streams.iter().enumerate() {
        assert_eq!(frames.len(), 300, "stream {s}");
        let tracks = main_tracks(frames);
        let ids = tracks[0].map(|t| t.id);
        assert_eq!(
            ids.iter().collect::<BTreeSet<_>>().len(),
            3,
            "three distinct ids: {ids:?}"
        );
        for (i, frame) in tracks.iter().enumerate() {
            assert_eq!(
                frame.map(|t| t.id),
                ids,
                "stream {s} frame {i}: ids changed"
            );
            let want = if i >= 2 {
                TrackState::Confirmed
            } else {
                TrackState::Tentative
            };
            assert!(
                frame.iter().all(|t| t.state == want && t.age == i as u32),
                "stream {s} frame {i}: {frame:?}"
            );
        }
        let mut others = BTreeSet::new();
        for (i, f) in frames.iter().enumerate() {
            let frame_ids: Vec<u64> = f
                .detections
                .iter()
                .filter_map(|d| d.track.map(|t| t.id))
                .collect();
            let unique: BTreeSet<_> = frame_ids.iter().collect();
            assert_eq!(
                unique.len(),
                frame_ids.len(),
                "stream {s} frame {i}: an id twice"
            );
            others.extend(frame_ids.into_iter().filter(|id| !ids.contains(id)));
        }
        eprintln!(
            "stream {s}: dog, bicycle, car ids {ids:?} in all 300 frames; {} other short tracks",
            others.len()
        );
        all_ids.push(
            frames
                .iter()
                .flat_map(|f| f.detections.iter().filter_map(|d| d.track.map(|t| t.id)))
                .collect::<BTreeSet<u64>>(),
        );
    }
    assert!(
        all_ids[0].is_disjoint(&all_ids[1]),
        "the two streams share ids"
    );
    // Same detections, same association: each id of one stream maps to
    // exactly one of the other.
    let mut pairing = HashMap::new();
    for (a, b) in streams[0].iter().zip(&streams[1]) {
        for (x, y) in a.detections.iter().zip(&b.detections) {
            let (x, y) = (x.track.map(|t| t.id), y.track.map(|t| t.id));
            assert_eq!(x.is_some(), y.is_some());
            if let (Some(x), Some(y)) = (x, y) {
                assert_eq!(
                    *pairing.entry(x).or_insert(y),
                    y,
                    "stream 1 split a track of stream 0"
                );
            }
        }
    }
}

/// A flushing seek a few frames forward drops the tracks: the first frame
/// after it starts new tracks (age 0, tentative) with ids never used
/// before. Without the flush the same small gap would continue the tracks
/// (`timestamp_gap_continues_tracks`).
#[test]
fn flushing_seek_resets_tracks_without_reusing_ids() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "{} ! infertrack ! appsink name=sink sync=false max-buffers=2",
        decode_and_detect()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let pull = || {
        let b = sink
            .try_pull_sample(gst::ClockTime::from_seconds(30))
            .expect("a frame within 30 s")
            .buffer_owned()
            .unwrap();
        (
            b.pts().unwrap().nseconds(),
            FrameDetections::from_buffer(&b).expect("detections"),
        )
    };
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut before = Vec::new();
    while before.len() < 30 {
        before.push(pull().1);
    }
    let ids_before = main_tracks(&before)[29].map(|t| t.id);
    assert!(main_tracks(&before)
        .iter()
        .all(|f| f.map(|t| t.id) == ids_before));
    let max_before = before
        .iter()
        .flat_map(|f| f.detections.iter().filter_map(|d| d.track.map(|t| t.id)))
        .max()
        .unwrap();
    // 45 frames in: a few frames past what the tracker has seen (30
    // pulled, a few queued), well within max-lost.
    let target = gst::ClockTime::from_nseconds(45 * FRAME_NS);
    pipeline
        .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
        .expect("seek accepted");
    let (pts, first) = pull();
    assert!(
        pts + FRAME_NS / 2 >= target.nseconds() && pts < target.nseconds() + 3 * FRAME_NS,
        "pts {pts}"
    );
    assert!(!first.detections.is_empty());
    for d in &first.detections {
        let t = d.track.expect("every confident detection starts a track");
        assert!(
            t.id > max_before,
            "id {} reused or older than {max_before}",
            t.id
        );
        assert_eq!((t.age, t.state), (0, TrackState::Tentative), "{}", d.label);
    }
    let mut after = vec![first];
    for _ in 0..4 {
        after.push(pull().1);
    }
    let ids_after = main_tracks(&after)[0].map(|t| t.id);
    assert!(main_tracks(&after)
        .iter()
        .all(|f| f.map(|t| t.id) == ids_after));
    assert!(ids_after.iter().all(|id| !ids_before.contains(id)));
    pipeline.set_state(gst::State::Null).unwrap();
}

// --- The synthetic scene ---

/// Deterministic xorshift, so the scene is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next()
    }
}

struct GroundTruth {
    /// Per frame: (object, box x1 y1 x2 y2).
    objects: Vec<Vec<(usize, [f32; 4])>>,
    /// Per frame: what the "detector" gives.
    detections: Vec<Vec<Detection>>,
}

const SCENE_FRAMES: usize = 150;
const SCENE_W: u32 = 640;
const SCENE_H: u32 = 480;

/// Four objects with constant velocities on a 640x480 frame: two people
/// crossing each other (same class, boxes 10 px apart in y), a car hidden
/// for frames 60..76 (not detected at all), a slow bicycle whose score
/// drops to 0.3 for frames 90..100. Detections are jittered by up to 2 px
/// per edge, 3 % are missed, and a false positive appears in about one
/// frame in five.
fn scene() -> GroundTruth {
    // (class, label, x, y, w, h, vx, vy)
    let objects = [
        (0, "person", 40.0, 200.0, 40.0, 100.0, 4.0, 0.0),
        (0, "person", 600.0, 210.0, 40.0, 100.0, -4.0, 0.0),
        (2, "car", 20.0, 40.0, 80.0, 50.0, 3.0, 1.5),
        (1, "bicycle", 300.0, 360.0, 60.0, 60.0, 0.5, -0.2),
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut gt = GroundTruth {
        objects: Vec::new(),
        detections: Vec::new(),
    };
    for f in 0..SCENE_FRAMES {
        let t = f as f32;
        let mut truth = Vec::new();
        let mut dets = Vec::new();
        for (k, &(class_id, label, x, y, w, h, vx, vy)) in objects.iter().enumerate() {
            let b = [x + vx * t, y + vy * t, x + vx * t + w, y + vy * t + h];
            truth.push((k, b));
            let hidden = k == 2 && (60..76).contains(&f);
            if hidden || rng.next() < 0.03 {
                continue;
            }
            let j: Vec<f32> = (0..4).map(|_| rng.range(-2.0, 2.0)).collect();
            let confidence = if k == 3 && (90..100).contains(&f) {
                0.3
            } else {
                rng.range(0.6, 0.95)
            };
            dets.push(detection(
                class_id,
                label,
                confidence,
                [b[0] + j[0], b[1] + j[1], b[2] + j[2], b[3] + j[3]],
            ));
        }
        if rng.next() < 0.2 {
            let (x, y) = (rng.range(0.0, 560.0), rng.range(0.0, 400.0));
            dets.push(detection(
                0,
                "person",
                rng.range(0.5, 0.7),
                [x, y, x + 30.0, y + 70.0],
            ));
        }
        dets.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        gt.objects.push(truth);
        gt.detections.push(dets);
    }
    gt
}

fn detection(class_id: u32, label: &str, confidence: f32, c: [f32; 4]) -> Detection {
    Detection {
        class_id,
        label: label.into(),
        confidence,
        x: c[0],
        y: c[1],
        width: c[2] - c[0],
        height: c[3] - c[1],
        ..Default::default()
    }
}

/// A small grey frame at frame `index` carrying `detections`.
fn frame(index: usize, detections: Vec<Detection>) -> gst::Buffer {
    let mut buffer = gst::Buffer::with_size((SCENE_W * SCENE_H) as usize).unwrap();
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(index as u64 * FRAME_NS));
        b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
        FrameDetections {
            model: "synthetic".into(),
            detections,
            frame_width: SCENE_W,
            frame_height: SCENE_H,
            ..Default::default()
        }
        .attach(b);
    }
    buffer
}

fn scene_caps() -> gst::Caps {
    gst_video::VideoInfo::builder(gst_video::VideoFormat::Gray8, SCENE_W, SCENE_H)
        .fps(gst::Fraction::new(30, 1))
        .build()
        .unwrap()
        .to_caps()
        .unwrap()
}

/// Runs the scene through `appsrc ! infertrack {props} ! appsink`; checks
/// each frame's region-of-interest metas carry the Rust meta's tracks.
fn track_scene(gt: &GroundTruth, props: &str) -> Vec<Arc<FrameDetections>> {
    init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time ! infertrack {props} ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let store = out.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap()
        .set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().unwrap();
                    let d = FrameDetections::from_buffer(buffer).expect("detections");
                    assert_eq!(
                        roi_tracks(buffer),
                        d.detections.iter().map(|d| d.track).collect::<Vec<_>>()
                    );
                    store.lock().unwrap().push(d);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    let frames: Vec<gst::Buffer> = gt
        .detections
        .iter()
        .enumerate()
        .map(|(i, d)| frame(i, d.clone()))
        .collect();
    pipeline.set_state(gst::State::Playing).unwrap();
    feed(&pipeline, "src", &scene_caps(), &frames, true);
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS within 30 s");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
    let out = std::mem::take(&mut *out.lock().unwrap());
    assert_eq!(out.len(), SCENE_FRAMES);
    out
}

/// The `tracking` params of a buffer's region-of-interest metas, by id.
fn roi_tracks(buffer: &gst::BufferRef) -> Vec<Option<Track>> {
    let mut by_id = BTreeMap::new();
    for roi in buffer.iter_meta::<gst_video::VideoRegionOfInterestMeta>() {
        let track = roi.param("tracking").map(|s| Track {
            id: s.get("id").unwrap(),
            age: s.get("age").unwrap(),
            state: match s.get::<&str>("state").unwrap() {
                "tentative" => TrackState::Tentative,
                "confirmed" => TrackState::Confirmed,
                "lost" => TrackState::Lost,
                other => panic!("state {other}"),
            },
        });
        by_id.insert(roi.id(), track);
    }
    by_id.into_values().collect()
}

/// CLEAR MOT scores of the tracker's output (detections whose track is
/// confirmed or, with emit-lost, lost) against the ground truth, matching
/// at IoU ≥ 0.5, each frame's pairs best IoU first.
#[derive(Debug)]
#[allow(dead_code)] // the counts are read through Debug, in the printed scores
struct Mot {
    mota: f64,
    id_switches: usize,
    misses: usize,
    false_positives: usize,
    objects: usize,
}

fn score(gt: &GroundTruth, out: &[Arc<FrameDetections>]) -> Mot {
    let mut last_id: HashMap<usize, u64> = HashMap::new();
    let (mut misses, mut fps, mut idsw, mut objects) = (0, 0, 0, 0);
    for (truth, frame) in gt.objects.iter().zip(out) {
        let output: Vec<(u64, [f32; 4])> = frame
            .detections
            .iter()
            .filter_map(|d| {
                d.track
                    .filter(|t| t.state != TrackState::Tentative)
                    .map(|t| (t.id, d.corners()))
            })
            .collect();
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (g, (_, gb)) in truth.iter().enumerate() {
            for (o, (_, ob)) in output.iter().enumerate() {
                let v = iou(*gb, *ob);
                if v >= 0.5 {
                    pairs.push((v, g, o));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut g_used, mut o_used) = (vec![false; truth.len()], vec![false; output.len()]);
        for (_, g, o) in pairs {
            if g_used[g] || o_used[o] {
                continue;
            }
            g_used[g] = true;
            o_used[o] = true;
            let id = output[o].0;
            if last_id
                .insert(truth[g].0, id)
                .is_some_and(|prev| prev != id)
            {
                idsw += 1;
            }
        }
        objects += truth.len();
        misses += g_used.iter().filter(|u| !**u).count();
        fps += o_used.iter().filter(|u| !**u).count();
    }
    Mot {
        mota: 1.0 - (misses + fps + idsw) as f64 / objects as f64,
        id_switches: idsw,
        misses,
        false_positives: fps,
        objects,
    }
}

/// The synthetic scene through the element: MOTA ≥ 0.9 and at most one ID
/// switch with the defaults; with emit-lost the hidden car is followed on
/// its predicted box, keeping its id, and MOTA rises.
#[test]
fn synthetic_scene_mota_and_id_switches() {
    let gt = scene();
    let plain = score(&gt, &track_scene(&gt, ""));
    eprintln!("defaults: {plain:?}");
    assert!(plain.mota >= 0.9, "{plain:?}");
    assert!(plain.id_switches <= 1, "{plain:?}");

    let out = track_scene(&gt, "emit-lost=true");
    let with_lost = score(&gt, &out);
    eprintln!("emit-lost=true: {with_lost:?}");
    assert!(
        with_lost.mota >= plain.mota && with_lost.mota >= 0.95,
        "{with_lost:?}"
    );
    assert!(with_lost.id_switches <= 1, "{with_lost:?}");
    // While hidden (frames 60..76) the car is one lost detection of the
    // id it had before, near its true box, and takes the id back after.
    let car = |f: usize| out[f].detections.iter().find(|d| d.label == "car");
    let car_id = |f: usize| car(f).and_then(|d| d.track).map(|t| (t.id, t.state));
    let (id, _) = car_id(59).expect("the car is tracked before it hides");
    for f in 60..76 {
        assert_eq!(car_id(f), Some((id, TrackState::Lost)), "frame {f}");
        let d = car(f).unwrap();
        let truth = gt.objects[f][2].1;
        assert!(
            iou(d.corners(), truth) >= 0.5,
            "frame {f}: {:?} vs {truth:?}",
            d.corners()
        );
    }
    assert_eq!(car_id(76), Some((id, TrackState::Confirmed)));
}

// --- The element's stream handling, frame by frame (Harness) ---

fn harness(props: &[(&str, &dyn ToValue)]) -> Harness {
    init();
    let element = gst::ElementFactory::make("infertrack").build().unwrap();
    for (name, value) in props {
        element.set_property_from_value(name, &value.to_value());
    }
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(scene_caps());
    h
}

/// One 40x80 box at x = 10 + 4·index.
fn moving_box(index: usize) -> Vec<Detection> {
    let x = 10.0 + 4.0 * index as f32;
    vec![detection(0, "person", 0.9, [x, 100.0, x + 40.0, 180.0])]
}

fn push(h: &mut Harness, index: usize, detections: Vec<Detection>) -> Option<Track> {
    let out = h.push_and_pull(frame(index, detections)).unwrap();
    FrameDetections::from_buffer(&out).unwrap().detections[0].track
}

#[test]
fn stream_start_resets_tracks() {
    let mut h = harness(&[]);
    let ids: Vec<u64> = (0..5)
        .map(|i| push(&mut h, i, moving_box(i)).unwrap().id)
        .collect();
    assert!(ids.iter().all(|&id| id == ids[0]));
    assert!(h.push_event(gst::event::StreamStart::new("second")));
    let t = push(&mut h, 5, moving_box(5)).unwrap();
    assert!(t.id > ids[0]);
    assert_eq!((t.age, t.state), (0, TrackState::Tentative));
}

#[test]
fn timestamp_going_back_resets_tracks() {
    let mut h = harness(&[]);
    let first = (20..25)
        .map(|i| push(&mut h, i, moving_box(i)).unwrap().id)
        .last()
        .unwrap();
    let t = push(&mut h, 3, moving_box(25)).unwrap();
    assert!(t.id > first);
    assert_eq!(t.age, 0);
}

/// A gap of 6 frames in the timestamps (frames dropped upstream, or not
/// inferred) advances the motion model by 6: the track goes on, aged by
/// the frames missed.
#[test]
fn timestamp_gap_continues_tracks() {
    let mut h = harness(&[]);
    let mut last = None;
    for i in 0..10 {
        last = push(&mut h, i, moving_box(i));
    }
    let before = last.unwrap();
    let t = push(&mut h, 15, moving_box(15)).unwrap();
    assert_eq!(
        (t.id, t.age, t.state),
        (before.id, 15, TrackState::Confirmed)
    );
}

/// Frames without detections pass untouched and do not move the tracks:
/// the next frame with detections is 2 frames on.
#[test]
fn frames_without_detections_pass_untouched() {
    let mut h = harness(&[]);
    for i in 0..3 {
        push(&mut h, i, moving_box(i));
    }
    let mut bare = gst::Buffer::with_size(16).unwrap();
    bare.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_nseconds(3 * FRAME_NS));
    let out = h.push_and_pull(bare.clone()).unwrap();
    assert!(FrameDetections::from_buffer(&out).is_none());
    assert_eq!(
        out.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .count(),
        0
    );
    assert_eq!(
        out.map_readable().unwrap().as_slice(),
        bare.map_readable().unwrap().as_slice()
    );
    let t = push(&mut h, 4, moving_box(4)).unwrap();
    assert_eq!((t.age, t.state), (4, TrackState::Confirmed));
}

/// The properties change the association while playing: with min-hits=1
/// a new track is confirmed at once; a higher high-threshold leaves a 0.9
/// detection unmatched to start nothing.
#[test]
fn properties_apply_while_playing() {
    let mut h = harness(&[("min-hits", &1u32)]);
    assert_eq!(
        push(&mut h, 0, moving_box(0)).unwrap().state,
        TrackState::Confirmed
    );
    h.element().unwrap().set_property("high-threshold", 0.95f64);
    h.element().unwrap().set_property("low-threshold", 0.95f64);
    assert_eq!(push(&mut h, 1, moving_box(1)), None);
}

/// CUDA-memory caps negotiate as system ones do: the element touches only
/// metadata, so a frame under `memory:CUDAMemory` caps gets its tracks
/// (the buffer here is plain memory; no GPU is needed for the metadata).
#[test]
fn cuda_memory_caps_are_accepted() {
    init();
    let mut h = Harness::new("infertrack");
    let caps = gst::Caps::builder("video/x-raw")
        .features([gstcudainfer::CUDA_MEMORY_FEATURE])
        .field("format", "NV12")
        .field("width", SCENE_W as i32)
        .field("height", SCENE_H as i32)
        .field("framerate", gst::Fraction::new(30, 1))
        .build();
    h.set_src_caps(caps.clone());
    let t = push(&mut h, 0, moving_box(0)).expect("a track");
    assert_eq!((t.age, t.state), (0, TrackState::Tentative));
    let negotiated = h.sinkpad().unwrap().current_caps().unwrap();
    assert!(negotiated
        .features(0)
        .unwrap()
        .contains(gstcudainfer::CUDA_MEMORY_FEATURE));
}
