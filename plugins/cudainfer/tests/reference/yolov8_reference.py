#!/usr/bin/env python3
"""Independent reference detections of an Ultralytics-layout model (YOLOv8,
YOLO11, YOLOv12) on one image, for tests/families_others.rs.

Written from the model facts alone (shared models README), with Pillow,
numpy and onnxruntime, none of the plugin's code: letterbox centred
(scale r = min(W/w, H/h), content round(w*r) x round(h*r), padding split
evenly with the odd pixel on the right/bottom, value 114), antialiased
bilinear resize (Pillow, each channel as a float image), RGB / 255, NCHW float32. Output [1, 4 + C, A]:
rows 0-3 cx, cy, w, h in input pixels, then C sigmoid class scores; one
candidate per (anchor, class) above the threshold, greedy class-wise NMS,
boxes mapped back to image pixels and clipped.

The image is an encoded picture (decoded by Pillow) or, with --rgb WxH,
raw RGB pixels. The committed reference takes the frame as GStreamer's
jpegdec decodes it, the frame the plugin is given in the tests: Pillow's and
jpegdec's decodings of dog.jpg differ by up to 70 levels (mean 1.5 to 1.8:
IDCT and chroma upsampling), enough to move yolov12n's car from 0.722 to
0.686 and its truck from below 0.25 to 0.29. The Pillow-decoded result is
kept beside it ("pillow_decoded"), for orientation.

Not needed at test time: its output is committed as a JSON file.

  python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install onnxruntime numpy pillow
  gst-launch-1.0 filesrc location=dog.jpg ! jpegdec ! videoconvert \\
      ! video/x-raw,format=RGB ! filesink location=/tmp/dog.rgb
  /tmp/refvenv/bin/python yolov8_reference.py MODEL dog.jpg LABELS \\
      --rgb 768x576 /tmp/dog.rgb > ../data/yolov12n_dog.reference.json
"""

import argparse
import json
import os

import numpy as np
import onnxruntime as ort
from PIL import Image


def letterbox_centred(image, width, height, pad=114):
    """The image letterboxed into a float32 HxWx3 canvas. Each channel is
    resized as a float image (Pillow's antialiased bilinear filter, no
    rounding to 8 bits): the int8 model's dynamically quantized activations
    take their scale from the input's range, and an 8-bit resize moved its
    scores by up to 0.05."""
    w, h = image.size
    r = min(width / w, height / h)
    cw, ch = int(round(w * r)), int(round(h * r))
    left, top = (width - cw) // 2, (height - ch) // 2
    rgb = np.asarray(image, dtype=np.float32)
    canvas = np.full((height, width, 3), float(pad), dtype=np.float32)
    for c in range(3):
        channel = Image.fromarray(np.ascontiguousarray(rgb[..., c]), mode="F")
        canvas[top:top + ch, left:left + cw, c] = np.asarray(channel.resize((cw, ch), Image.BILINEAR))
    # The mapping back uses the scale of each axis as placed.
    return canvas, (cw / w, ch / h), (left, top)


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect(session, image, labels, conf_threshold, nms_threshold):
    """Detections of `image` (a Pillow RGB image) in its pixels."""
    inp = session.get_inputs()[0]
    _, _, height, width = inp.shape
    canvas, (sx, sy), (left, top) = letterbox_centred(image, width, height)
    tensor = (canvas / 255.0).transpose(2, 0, 1)[None]
    out = session.run(None, {inp.name: np.ascontiguousarray(tensor)})[0][0]

    boxes, scores = out[:4], out[4:]  # [4, A], [C, A]
    classes, anchors = np.nonzero(scores > conf_threshold)
    candidates = []
    for c, a in zip(classes, anchors):
        cx, cy, w, h = (float(v) for v in boxes[:, a])
        candidates.append(
            (float(scores[c, a]), int(c), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        )
    candidates.sort(key=lambda t: -t[0])
    kept = []
    for cand in candidates:
        if all(k[1] != cand[1] or iou(k[2], cand[2]) <= nms_threshold for k in kept):
            kept.append(cand)

    iw, ih = image.size
    detections = []
    for conf, c, (x1, y1, x2, y2) in kept:
        x1 = min(max((x1 - left) / sx, 0.0), iw)
        x2 = min(max((x2 - left) / sx, 0.0), iw)
        y1 = min(max((y1 - top) / sy, 0.0), ih)
        y2 = min(max((y2 - top) / sy, 0.0), ih)
        detections.append(
            {
                "class_id": c,
                "label": labels[c],
                "confidence": round(conf, 5),
                "x1": round(x1, 2),
                "y1": round(y1, 2),
                "x2": round(x2, 2),
                "y2": round(y2, 2),
            }
        )
    return detections


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("image", help="the encoded picture")
    p.add_argument("labels")
    p.add_argument("--rgb", nargs=2, metavar=("WxH", "FILE"), help="the decoded frame, raw RGB")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--nms", type=float, default=0.45)
    args = p.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    labels = [l.strip() for l in open(args.labels)]
    pillow = Image.open(args.image).convert("RGB")
    result = {
        "model": os.path.basename(args.model),
        "image": os.path.basename(args.image),
        "made_by": "tests/reference/yolov8_reference.py (Pillow, numpy, onnxruntime "
        + ort.__version__
        + ")",
        "confidence_threshold": args.conf,
        "nms_threshold": args.nms,
    }
    if args.rgb:
        w, h = (int(v) for v in args.rgb[0].split("x"))
        frame = np.fromfile(args.rgb[1], dtype=np.uint8).reshape(h, w, 3)
        result["decoded_by"] = "GStreamer: jpegdec ! videoconvert ! video/x-raw,format=RGB"
        result["detections"] = detect(
            session, Image.fromarray(frame), labels, args.conf, args.nms
        )
        result["pillow_decoded"] = detect(session, pillow, labels, args.conf, args.nms)
    else:
        result["decoded_by"] = "Pillow"
        result["detections"] = detect(session, pillow, labels, args.conf, args.nms)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
