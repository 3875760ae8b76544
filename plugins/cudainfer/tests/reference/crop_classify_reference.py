#!/usr/bin/env python3
"""Independent reference for secondary inference (tests/pipeline_secondary.rs):
MobileNetV2 (ImageNet, 1001 classes) on the crop of each object that the
independent yolov12n reference (yolov12n_dog.reference.json, made by
yolov8_reference.py) found on dog.jpg.

Written from the documented rules alone, with Pillow, numpy and
onnxruntime, none of the plugin's code. The frame is the picture as
GStreamer decodes it (jpegdec ! videoconvert to RGB). An object's crop is
the pixels its box touches: x from floor(x1) to ceil(x2), y from floor(y1)
to ceil(y2), clipped to the frame (README, cudapreprocess mode=objects).
Each channel of the crop, as a float32 image, is stretched to 224x224 with
Pillow's antialiased bilinear filter (the definition cudapreprocess
follows, without rounding); RGB, x / 127.5 - 1, NCHW float32. The output
is already softmaxed.

Not needed at test time: its output is committed as a JSON file.

  /tmp/refvenv/bin/python crop_classify_reference.py MODELS_DIR dog.jpg \
      ../data/yolov12n_dog.reference.json > ../data/yolov12n_dog_crops_mobilenetv2.reference.json
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

MODEL = "mobilenetv2_1.0_224_float.onnx"
LABELS = "imagenet_labels_1001.txt"
SIDE = 224


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


def crop_tensor(frame, box):
    h, w = frame.shape[:2]
    x1 = min(max(math.floor(box["x1"]), 0), w)
    y1 = min(max(math.floor(box["y1"]), 0), h)
    x2 = min(max(math.ceil(box["x2"]), 0), w)
    y2 = min(max(math.ceil(box["y2"]), 0), h)
    crop = frame[y1:y2, x1:x2].astype(np.float32)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(crop[..., c]), mode="F")
                           .resize((SIDE, SIDE), Image.BILINEAR)) for c in range(3)]
    return (np.stack(channels) / 127.5 - 1.0).astype(np.float32), [x1, y1, x2 - x1, y2 - y1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models")
    parser.add_argument("image")
    parser.add_argument("detections")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    labels = open(os.path.join(args.models, LABELS)).read().splitlines()
    frame = gstreamer_frame(args.image)
    session = ort.InferenceSession(os.path.join(args.models, MODEL),
                                   providers=["CPUExecutionProvider"])
    objects = []
    for d in json.load(open(args.detections))["detections"]:
        x, region = crop_tensor(frame, d)
        (probs,) = session.run(None, {session.get_inputs()[0].name: x[None]})
        row = probs[0]
        top = np.argsort(-row, kind="stable")[: args.top]
        objects.append({
            "label": d["label"],
            "box": {k: d[k] for k in ("x1", "y1", "x2", "y2")},
            "crop": region,
            "classes": [{"class_id": int(i), "label": labels[i], "confidence": float(row[i])}
                        for i in top],
        })
    print(json.dumps({
        "model": MODEL,
        "image": os.path.basename(args.image),
        "detections": os.path.basename(args.detections),
        "objects": objects,
    }, indent=2))


if __name__ == "__main__":
    main()
