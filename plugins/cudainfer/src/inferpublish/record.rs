//! One frame's results as a JSON line, the format docs/results-schema.json
//! describes. Bump [`SCHEMA_VERSION`] (and the schema's) on any change a
//! reader could notice.

use serde::Serialize;

use crate::meta::detections::{Classification, Detection, FrameDetections};

/// `schema_version` of every line.
pub const SCHEMA_VERSION: u32 = 1;

/// What the element knows of the frame besides its results.
pub struct FrameInfo<'a> {
    pub source: &'a str,
    pub stream_id: Option<&'a str>,
    /// Frames this element has published before this one (per start).
    pub seq: u64,
    pub pts: Option<gst::ClockTime>,
    pub running_time: Option<gst::ClockTime>,
    pub width: u32,
    pub height: u32,
}

#[derive(Serialize)]
struct Record<'a> {
    schema_version: u32,
    source: &'a str,
    stream_id: Option<&'a str>,
    seq: u64,
    pts_ns: Option<u64>,
    running_time_ns: Option<u64>,
    frame: Frame,
    model: Option<&'a str>,
    /// Why the model did not run on this frame; absent when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<&'static str>,
    objects: Vec<Object<'a>>,
    classifications: Vec<Class<'a>>,
}

#[derive(Serialize)]
struct Frame {
    width: u32,
    height: u32,
}

#[derive(Serialize)]
struct Object<'a> {
    label: &'a str,
    class_id: u32,
    confidence: f32,
    #[serde(rename = "box")]
    bbox: BoxPx,
    #[serde(skip_serializing_if = "Option::is_none")]
    track: Option<TrackRecord>,
    /// Present (true) when the box is the tracker's prediction.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    predicted: bool,
    classifications: Vec<Class<'a>>,
}

/// Box in frame pixels, unrounded (the region-of-interest metas round).
#[derive(Serialize)]
struct BoxPx {
    x: f32,
    y: f32,
    w: f32,
    h: f32,
}

#[derive(Serialize)]
struct TrackRecord {
    id: u64,
    age: u32,
    state: &'static str,
}

#[derive(Serialize)]
struct Class<'a> {
    label: &'a str,
    class_id: u32,
    confidence: f32,
}

fn class(c: &Classification) -> Class<'_> {
    Class {
        label: &c.label,
        class_id: c.class_id,
        confidence: c.confidence,
    }
}

fn object(d: &Detection) -> Object<'_> {
    Object {
        label: &d.label,
        class_id: d.class_id,
        confidence: d.confidence,
        bbox: BoxPx {
            x: d.x,
            y: d.y,
            w: d.width,
            h: d.height,
        },
        track: d.track.map(|t| TrackRecord {
            id: t.id,
            age: t.age,
            state: t.state.as_str(),
        }),
        predicted: d.predicted,
        classifications: d.classifications.iter().map(class).collect(),
    }
}

/// The JSON line (without its newline) of one frame; a frame without
/// results has `model` null and no objects or classes.
pub fn to_json_line(info: &FrameInfo, results: Option<&FrameDetections>) -> Vec<u8> {
    let record = Record {
        schema_version: SCHEMA_VERSION,
        source: info.source,
        stream_id: info.stream_id,
        seq: info.seq,
        pts_ns: info.pts.map(|t| t.nseconds()),
        running_time_ns: info.running_time.map(|t| t.nseconds()),
        frame: Frame {
            width: info.width,
            height: info.height,
        },
        model: results.map(|r| r.model.as_str()),
        skipped: results.and_then(|r| r.skipped).map(|s| s.as_str()),
        objects: results
            .map(|r| r.detections.iter().map(object).collect())
            .unwrap_or_default(),
        classifications: results
            .map(|r| r.classifications.iter().map(class).collect())
            .unwrap_or_default(),
    };
    // Serialising plain structs of numbers and strings into memory cannot fail.
    serde_json::to_vec(&record).expect("results serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::detections::{Track, TrackState};

    #[test]
    fn line_holds_every_field() {
        let results = FrameDetections {
            model: "m.onnx".into(),
            detections: vec![Detection {
                class_id: 16,
                label: "dog".into(),
                confidence: 0.875,
                x: 1.5,
                y: 2.0,
                width: 30.25,
                height: 40.0,
                classifications: vec![Classification {
                    class_id: 3,
                    label: "husky".into(),
                    confidence: 0.5,
                }],
                track: Some(Track {
                    id: 7,
                    age: 12,
                    state: TrackState::Confirmed,
                }),
                predicted: false,
            }],
            frame_width: 640,
            frame_height: 360,
            ..Default::default()
        };
        let info = FrameInfo {
            source: "cam \"1\"",
            stream_id: Some("s/1"),
            seq: 4,
            pts: Some(gst::ClockTime::from_mseconds(40)),
            running_time: None,
            width: 640,
            height: 360,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&to_json_line(&info, Some(&results))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "schema_version": 1, "source": "cam \"1\"", "stream_id": "s/1", "seq": 4,
                "pts_ns": 40_000_000u64, "running_time_ns": null,
                "frame": {"width": 640, "height": 360}, "model": "m.onnx",
                "objects": [{"label": "dog", "class_id": 16, "confidence": 0.875,
                             "box": {"x": 1.5, "y": 2.0, "w": 30.25, "h": 40.0},
                             "track": {"id": 7, "age": 12, "state": "confirmed"},
                             "classifications": [{"label": "husky", "class_id": 3, "confidence": 0.5}]}],
                "classifications": []
            })
        );
        // A frame not inferred: `skipped`, and each predicted box says so.
        let mut skipped = results.clone();
        skipped.skipped = Some(crate::Skip::Interval);
        skipped.detections[0].predicted = true;
        let v: serde_json::Value =
            serde_json::from_slice(&to_json_line(&info, Some(&skipped))).unwrap();
        assert_eq!(v["skipped"], "interval");
        assert_eq!(v["objects"][0]["predicted"], true);
        let bare: serde_json::Value = serde_json::from_slice(&to_json_line(&info, None)).unwrap();
        assert_eq!(bare["model"], serde_json::Value::Null);
        assert_eq!(bare["objects"], serde_json::json!([]));
        assert!(!String::from_utf8(to_json_line(&info, None))
            .unwrap()
            .contains('\n'));
    }
}
