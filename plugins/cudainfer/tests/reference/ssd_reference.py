#!/usr/bin/env python3
"""Independent reference detections of the Ultra-Light face detector (an
SSD-style model) on one picture, for tests/families_others.rs.

Written from the model facts alone (shared models README), with Pillow,
numpy and onnxruntime, none of the plugin's code. The frame is the picture
as GStreamer decodes it (`jpegdec ! videoconvert` to RGB, run here through
gst-launch-1.0), the frame the plugin is given in the tests. It is stretched
to the model's input (antialiased bilinear, Pillow), RGB, (x - 127) / 128,
NCHW float32. Outputs: scores [1, P, C] (class 0 background) and boxes
[1, P, 4]. One candidate per (prior, class >= 1) above the threshold,
greedy class-wise NMS, boxes in picture pixels, clipped.

Both variants are run: the model that decodes its boxes itself (x1, y1, x2,
y2 in 0..1) and the one with raw regressions, decoded here against the
UltraFace priors. Those priors are the decoded model's own: measured on a
random input, they reproduce its boxes to 1e-7 only with the centre of cell
(i, j) at ((i + 0.5) / fw, (j + 0.5) / fh), where fw x fh = ceil(W/s) x
ceil(H/s) is the feature map, and the priors clamped to 0..1 (dividing by
H/s instead, as the models README writes it, moves boxes by up to 0.06 of
the height at strides 32 and 64, where 240/s is not whole). The script
checks that both variants give the same faces.

Not needed at test time: its output is committed as a JSON file.

  python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install onnxruntime numpy pillow
  /tmp/refvenv/bin/python ssd_reference.py MODELS_DIR faces.jpg > ../data/ultraface_faces.reference.json
"""

import argparse
import json
import math
import os
import subprocess
import tempfile

import numpy as np
import onnxruntime as ort
from PIL import Image

DECODED = "ultraface_version-RFB-320.onnx"
RAW = "ultraface_version-RFB-320_without_postprocessing.onnx"
STRIDES = [8, 16, 32, 64]
MIN_SIZES = [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]]
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2


def gstreamer_frame(path):
    """The picture as jpegdec ! videoconvert gives it, an RGB array."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "frame.rgb")
        size = Image.open(path).size
        subprocess.run(
            ["gst-launch-1.0", "-q", "filesrc", f"location={path}", "!", "jpegdec", "!",
             "videoconvert", "!", "video/x-raw,format=RGB", "!", "filesink", f"location={raw}"],
            check=True,
        )
        return np.fromfile(raw, dtype=np.uint8).reshape(size[1], size[0], 3)


def priors(width, height):
    """[P, 4] cx, cy, w, h in 0..1, in the order (layer, row, column, size)."""
    out = []
    for stride, sizes in zip(STRIDES, MIN_SIZES):
        fw, fh = math.ceil(width / stride), math.ceil(height / stride)
        for j in range(fh):
            for i in range(fw):
                for m in sizes:
                    out.append([(i + 0.5) / fw, (j + 0.5) / fh, m / width, m / height])
    return np.clip(np.array(out, dtype=np.float32), 0.0, 1.0)


def decode_raw(loc, prior):
    centre = loc[:, :2] * CENTER_VARIANCE * prior[:, 2:] + prior[:, :2]
    size = np.exp(loc[:, 2:] * SIZE_VARIANCE) * prior[:, 2:]
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect(model, frame, raw, conf_threshold, nms_threshold):
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    _, _, height, width = inp.shape
    resized = Image.fromarray(frame).resize((width, height), Image.BILINEAR)
    tensor = ((np.asarray(resized, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {inp.name: np.ascontiguousarray(tensor)})))
    scores, boxes = out["scores"][0], out["boxes"][0]
    if raw:
        boxes = decode_raw(boxes, priors(width, height))
    fh, fw = frame.shape[:2]
    boxes = boxes * np.array([fw, fh, fw, fh], dtype=np.float32)
    candidates = []
    for p, c in zip(*np.nonzero(scores[:, 1:] > conf_threshold)):
        candidates.append((float(scores[p, c + 1]), int(c + 1), [float(v) for v in boxes[p]]))
    candidates.sort(key=lambda t: -t[0])
    kept = []
    for cand in candidates:
        if all(k[1] != cand[1] or iou(k[2], cand[2]) <= nms_threshold for k in kept):
            kept.append(cand)
    detections = []
    for conf, c, (x1, y1, x2, y2) in kept:
        x1, x2 = (min(max(v, 0.0), fw) for v in (x1, x2))
        y1, y2 = (min(max(v, 0.0), fh) for v in (y1, y2))
        detections.append({"class_id": c, "label": "face", "confidence": round(conf, 5),
                           "x1": round(x1, 2), "y1": round(y1, 2),
                           "x2": round(x2, 2), "y2": round(y2, 2)})
    return detections


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", help="the folder holding both UltraFace models")
    p.add_argument("image")
    p.add_argument("--conf", type=float, default=0.7)
    p.add_argument("--nms", type=float, default=0.3)
    args = p.parse_args()
    ort.set_default_logger_severity(3)
    frame = gstreamer_frame(args.image)
    found = {
        variant: detect(os.path.join(args.models, name), frame, variant == "raw",
                        args.conf, args.nms)
        for variant, name in (("decoded", DECODED), ("raw", RAW))
    }
    a, b = found["decoded"], found["raw"]
    assert len(a) == len(b) and all(
        abs(x["confidence"] - y["confidence"]) < 1e-4
        and iou([x[k] for k in ("x1", "y1", "x2", "y2")], [y[k] for k in ("x1", "y1", "x2", "y2")]) > 0.999
        for x, y in zip(a, b)
    ), "the raw model decoded against the priors must give the decoded model's faces"
    print(json.dumps({
        "models": [DECODED, RAW],
        "image": os.path.basename(args.image),
        "made_by": "tests/reference/ssd_reference.py (Pillow, numpy, onnxruntime " + ort.__version__ + ")",
        "decoded_by": "GStreamer: jpegdec ! videoconvert ! video/x-raw,format=RGB",
        "confidence_threshold": args.conf,
        "nms_threshold": args.nms,
        "detections": a,
    }, indent=1))


if __name__ == "__main__":
    main()
