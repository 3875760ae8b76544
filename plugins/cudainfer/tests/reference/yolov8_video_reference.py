#!/usr/bin/env python3
"""Independent reference detections of an Ultralytics-layout model on every
frame of a clip, for tests/families_others.rs: yolov8_reference.py's decoding (its
`detect`, written from the model facts alone) run on each frame as GStreamer
decodes it (avdec_h264 ! videoconvert to RGB, the frames the plugin is given
in the test).

Not needed at test time: its output is committed as a JSON file (one line
per frame).

  gst-launch-1.0 filesrc location=dog_1080p.mp4 ! qtdemux ! h264parse ! avdec_h264 \\
      ! videoconvert ! video/x-raw,format=RGB ! filesink location=/tmp/dog_1080p.rgb
  /tmp/refvenv/bin/python yolov8_video_reference.py MODEL LABELS 1920x1080 /tmp/dog_1080p.rgb \\
      > ../data/yolov12n_dog_1080p.reference.json
"""

import argparse
import json
import os

import numpy as np
import onnxruntime as ort
from PIL import Image

from yolov8_reference import detect


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("labels")
    p.add_argument("size", metavar="WxH")
    p.add_argument("frames", help="the decoded frames, raw RGB, one after the other")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--nms", type=float, default=0.45)
    args = p.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    labels = [l.strip() for l in open(args.labels)]
    w, h = (int(v) for v in args.size.split("x"))
    frame_bytes = w * h * 3
    frames = []
    with open(args.frames, "rb") as f:
        while len(data := f.read(frame_bytes)) == frame_bytes:
            image = Image.fromarray(np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3))
            frames.append(detect(session, image, labels, args.conf, args.nms))
    header = {
        "model": os.path.basename(args.model),
        "clip": "dog_1080p.mp4",
        "made_by": "tests/reference/yolov8_video_reference.py (Pillow, numpy, onnxruntime "
        + ort.__version__ + ")",
        "decoded_by": "GStreamer: avdec_h264 ! videoconvert ! video/x-raw,format=RGB",
        "confidence_threshold": args.conf,
        "nms_threshold": args.nms,
    }
    print("{")
    for key, value in header.items():
        print(f" {json.dumps(key)}: {json.dumps(value)},")
    print(' "frames": [')
    print(",\n".join("  " + json.dumps(d, separators=(",", ":")) for d in frames))
    print(" ]\n}")


if __name__ == "__main__":
    main()
