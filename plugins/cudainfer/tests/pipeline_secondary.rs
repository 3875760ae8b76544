//! Secondary inference: `cudapreprocess mode=objects` crops the objects a
//! detector found and `trtinfer model-type=classifier` puts the classes of
//! each crop on its object, against an independent crop-and-classify
//! (tests/reference/crop_classify_reference.py, from the independent
//! yolov12n reference boxes).

mod common;

use std::sync::Arc;

use common::onnx::*;
use common::*;
use gst::prelude::*;
use gstcudainfer::{Detection, FrameDetections};

const CLASSIFIER: &str = "mobilenetv2_1.0_224_float.onnx";

fn classifier(properties: &str) -> String {
    format!(
        "trtinfer model={} model-type=classifier labels={} {properties}",
        shared_model(CLASSIFIER),
        shared_model("imagenet_labels_1001.txt"),
    )
}

/// dog.jpg decoded as `format` through yolov12n at the reference's
/// thresholds, then `cudapreprocess mode=objects {crop}` and the
/// classifier with `classify`.
fn dog_jpg_objects(format: &str, crop: &str, classify: &str) -> Run {
    run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format={format} \
         ! cudapreprocess ! trtinfer model={} model-type=yolov8 labels={} confidence-threshold=0.25 \
           nms-threshold=0.45 \
         ! cudapreprocess mode=objects {crop} ! {} ! appsink name=sink",
        media("dog.jpg"),
        shared_model("yolov12n.onnx"),
        labels(),
        classifier(classify),
    ))
}

struct CropReference {
    label: String,
    bbox: [f32; 4],
    /// Top 3: class id, label, confidence.
    classes: Vec<(u32, String, f32)>,
}

fn crop_references() -> Vec<CropReference> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/yolov12n_dog_crops_mobilenetv2.reference.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let b = &o["box"];
            CropReference {
                label: o["label"].as_str().unwrap().to_string(),
                bbox: ["x1", "y1", "x2", "y2"].map(|k| b[k].as_f64().unwrap() as f32),
                classes: o["classes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        (
                            c["class_id"].as_u64().unwrap() as u32,
                            c["label"].as_str().unwrap().to_string(),
                            c["confidence"].as_f64().unwrap() as f32,
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

fn only_frame(run: &Run) -> Arc<FrameDetections> {
    assert_eq!(run.error, None);
    let all = run.detections();
    assert_eq!(all.len(), 1);
    all[0].clone()
}

/// Attaches `objects` as a detector's result to every buffer leaving
/// `element` (frames of `width` x `height`), in place of a detector.
fn attach_objects_after(
    pipeline: &gst::Pipeline,
    element: &str,
    objects: Vec<Detection>,
    (width, height): (u32, u32),
) {
    let pad = pipeline
        .by_name(element)
        .unwrap()
        .static_pad("src")
        .unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            FrameDetections {
                model: "reference boxes".into(),
                detections: objects.clone(),
                frame_width: width,
                frame_height: height,
                ..Default::default()
            }
            .attach(buffer.make_mut());
        }
        gst::PadProbeReturn::Ok
    });
}

/// The crops of the reference's own boxes, classified: the same top 3
/// classes in order, each within 0.02 of the reference's confidence (the
/// same pixels resampled by the same definition; what is left is float
/// summation order and the session's kernels).
#[test]
fn crops_of_the_reference_boxes_match_an_independent_crop_and_classify() {
    init();
    let references = crop_references();
    let objects: Vec<Detection> = references
        .iter()
        .map(|r| Detection {
            label: r.label.clone(),
            confidence: 0.9,
            x: r.bbox[0],
            y: r.bbox[1],
            width: r.bbox[2] - r.bbox[0],
            height: r.bbox[3] - r.bbox[1],
            ..Default::default()
        })
        .collect();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=RGB ! identity name=detector \
         ! cudapreprocess mode=objects min-object-size=0 ! {} ! appsink name=sink",
        media("dog.jpg"),
        classifier("classifier-top-k=3 confidence-threshold=0"),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    attach_objects_after(&pipeline, "detector", objects, (768, 576));
    let received = collect_detections(&pipeline, "sink");
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None);
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 1);
    let frame = &received[0].1;
    assert_eq!(frame.detections.len(), references.len());
    for (d, r) in frame.detections.iter().zip(&references) {
        let got: Vec<(u32, f32)> = d
            .classifications
            .iter()
            .map(|c| (c.class_id, c.confidence))
            .collect();
        println!("{}: {:?} (reference {:?})", r.label, got, r.classes);
        assert_eq!(got.len(), 3, "{}: {:?}", r.label, d.classifications);
        for ((id, conf), (ref_id, ref_label, ref_conf)) in got.iter().zip(&r.classes) {
            assert_eq!(id, ref_id, "{}: {got:?} vs {:?}", r.label, r.classes);
            assert!(
                (conf - ref_conf).abs() <= 0.02,
                "{}: {ref_label} {conf} vs {ref_conf}",
                r.label
            );
        }
        assert!(frame.classifications.is_empty(), "no whole-frame classes");
    }
}

/// The reference object `d` is (same class, IoU >= 0.9), if any.
fn matching_reference<'a>(d: &Detection, references: &'a [CropReference]) -> &'a CropReference {
    references
        .iter()
        .filter(|r| r.label == d.label)
        .map(|r| (r, iou(d.corners(), r.bbox)))
        .filter(|(_, overlap)| *overlap >= 0.9)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_else(|| panic!("no reference object for {d:?}"))
        .0
}

/// End to end, detector then classifier: every object the detector found
/// carries the classes of its crop, in the Rust meta and as a
/// `classification` parameter on its region-of-interest meta. Boxes differ
/// from the reference's by a pixel here and there, which moves an unsure
/// crop's classes (the truck's top two are 0.20 and 0.19): objects whose
/// reference top class leads by 0.1 or more must have it, within 0.05;
/// every object's top class must be among the reference's top 3.
#[test]
fn detector_then_classifier_classifies_each_object() {
    let run = dog_jpg_objects("RGB", "", "classifier-top-k=3 confidence-threshold=0");
    let frame = only_frame(&run);
    let references = crop_references();
    assert_eq!(frame.detections.len(), references.len());
    let mut sure = 0;
    for d in &frame.detections {
        let r = matching_reference(d, &references);
        let top = &d.classifications[0];
        println!(
            "{} {:?} -> {} {:.3}",
            d.label,
            d.corners(),
            top.label,
            top.confidence
        );
        assert!(
            r.classes.iter().any(|c| c.0 == top.class_id),
            "{}: {top:?} not in {:?}",
            d.label,
            r.classes
        );
        if r.classes[0].2 - r.classes[1].2 >= 0.1 {
            sure += 1;
            assert_eq!(top.class_id, r.classes[0].0, "{}", d.label);
            assert!(
                (top.confidence - r.classes[0].2).abs() <= 0.05,
                "{}",
                d.label
            );
        }
    }
    assert!(sure >= 1, "the dog is a sure crop");

    // Stock readers: each object's ROI meta has its detection and its top class.
    let buffer = &run.buffers[0];
    let rois: Vec<_> = buffer
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .collect();
    assert_eq!(
        rois.len(),
        frame.detections.len(),
        "no whole-frame class metas"
    );
    for (roi, d) in rois.iter().zip(&frame.detections) {
        let detection = roi.param("detection").expect("a detection param");
        assert_eq!(detection.get::<String>("label").unwrap(), d.label);
        let class = roi.param("classification").expect("a classification param");
        assert_eq!(
            class.get::<u32>("class-id").unwrap(),
            d.classifications[0].class_id
        );
        let confidence = class.get::<f64>("confidence").unwrap();
        assert!((confidence - d.classifications[0].confidence as f64).abs() < 1e-6);
    }
}

/// YUV frames: crops start on a chroma sample (even coordinates) and the
/// chroma is resampled from its own plane, so the classes are not the RGB
/// reference's to the digit, but a sure crop keeps its class.
#[test]
fn yuv_frames_classify_the_objects_too() {
    let references = crop_references();
    for format in ["NV12", "I420"] {
        let run = dog_jpg_objects(format, "object-classes=dog", "");
        let frame = only_frame(&run);
        let dog = frame.detections.iter().find(|d| d.label == "dog").unwrap();
        let r = matching_reference(dog, &references);
        let top = &dog.classifications[0];
        assert_eq!(top.class_id, r.classes[0].0, "{format}: {top:?}");
        assert!(
            (top.confidence - r.classes[0].2).abs() <= 0.05,
            "{format}: {top:?}"
        );
    }
}

#[test]
fn object_classes_size_and_count_choose_the_crops() {
    let classified = |crop: &str| -> Vec<String> {
        // Threshold 0: the car's top class is only 0.21.
        let frame = only_frame(&dog_jpg_objects("RGB", crop, "confidence-threshold=0"));
        frame
            .detections
            .iter()
            .filter(|d| !d.classifications.is_empty())
            .map(|d| d.label.clone())
            .collect()
    };
    assert_eq!(classified("object-classes=dog"), ["dog"]);
    // By class id (COCO: 1 bicycle, 2 car).
    assert_eq!(classified("object-classes=1,2"), ["bicycle", "car"]);
    // The car and the truck are under 100 pixels high.
    assert_eq!(classified("min-object-size=100"), ["bicycle", "dog"]);
    assert_eq!(classified("max-objects=2"), ["bicycle", "dog"]);
    assert!(classified("object-classes=person").is_empty());
}

/// A classifier of a crop's mean colour, for a dynamic batch: input
/// [N, 3, 8, 8], output the mean of each channel [N, 3], softmaxed by
/// trtinfer into red / green / blue.
fn colour_classifier() -> (String, String) {
    let model = onnx_model(
        "mean_colour",
        &[
            node("GlobalAveragePool", &["input"], &["pooled"], &[]),
            node("Flatten", &["pooled"], &["logits"], &[]),
        ],
        &[("input", FLOAT, &[Named("N"), Fixed(3), Fixed(8), Fixed(8)])],
        &[("logits", FLOAT, &[Named("N"), Fixed(3)])],
    );
    let labels = std::env::temp_dir().join(format!("colours_{}.txt", std::process::id()));
    std::fs::write(&labels, "red\ngreen\nblue\n").unwrap();
    (
        temp_model("mean_colour", &model),
        labels.display().to_string(),
    )
}

/// Two cameras' crops share the classifier's batches: a red and a blue
/// stream, each frame with two objects (left and right half); every object
/// gets its stream's colour, every frame arrives in order, and runs held
/// crops of both streams.
#[test]
fn crops_of_all_streams_batch_together() {
    init();
    let (model, labels) = colour_classifier();
    const FRAMES: usize = 10;
    let branch = |i: usize, pattern: &str| {
        format!(
            "videotestsrc pattern={pattern} num-buffers={FRAMES} ! video/x-raw,format=RGB,width=64,height=48 \
             ! identity name=detector{i} ! cudapreprocess mode=objects min-object-size=0 \
             ! trtinfer name=infer{i} model={model} labels={labels} model-type=classifier \
               classifier-activation=softmax batch-group=colours max-batch-size=8 batch-timeout=500 \
             ! appsink name=sink{i} "
        )
    };
    let pipeline = gst::parse::launch(&format!("{} {}", branch(0, "red"), branch(1, "blue")))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let halves = vec![
        Detection {
            label: "left".into(),
            x: 0.0,
            y: 0.0,
            width: 32.0,
            height: 48.0,
            ..Default::default()
        },
        Detection {
            label: "right".into(),
            x: 32.0,
            y: 0.0,
            width: 32.0,
            height: 48.0,
            ..Default::default()
        },
    ];
    let mut received = Vec::new();
    for i in 0..2 {
        attach_objects_after(&pipeline, &format!("detector{i}"), halves.clone(), (64, 48));
        received.push(collect_detections(&pipeline, &format!("sink{i}")));
    }
    let ended = run_to_end(&pipeline);
    assert_eq!(ended.error, None);
    for (received, colour) in received.iter().zip(["red", "blue"]) {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), FRAMES, "{colour}: frames lost");
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "{colour}: frames out of order"
        );
        for (_, frame) in got.iter() {
            assert_eq!(frame.detections.len(), 2);
            for d in &frame.detections {
                let top = &d.classifications[0];
                assert_eq!(top.label, colour, "{d:?}");
                // softmax of (1, -1, -1): e / (e + 2/e).
                assert!((top.confidence - 0.787).abs() < 0.01, "{top:?}");
            }
        }
    }
    let largest: u32 = pipeline
        .by_name("infer0")
        .unwrap()
        .property("largest-batch");
    assert!(
        largest > 2,
        "every batch held one stream's crops only (largest {largest})"
    );
    let _ = std::fs::remove_file(model);
    let _ = std::fs::remove_file(labels);
}

#[test]
fn objects_mode_without_a_detector_says_what_to_put_before_it() {
    let run = run(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=64,height=48 \
         ! cudapreprocess mode=objects ! {} ! appsink name=sink",
        classifier("")
    ));
    let e = run.expect_error();
    assert!(
        e.contains("the frame carries no detections: put a trtinfer detector before it"),
        "{e}"
    );
}

#[test]
fn crops_into_a_detector_are_refused() {
    let run = run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! cudapreprocess ! trtinfer model={} labels={} \
         ! cudapreprocess mode=objects ! trtinfer model={} ! appsink name=sink",
        media("dog.jpg"),
        model(),
        labels(),
        model(),
    ));
    let e = run.expect_error();
    assert!(
        e.contains("cannot use with model-type=yolox: crops are for classifiers"),
        "{e}"
    );
}
