#!/usr/bin/env python3
"""Why tests/families_others.rs compares yolov8n_int8.onnx with a wider confidence
bound than the float32 models: its activations are quantized dynamically
(DynamicQuantizeLinear takes each tensor's scale from its range), so input
differences at float rounding level move its marginal scores by several
hundredths, where yolov12n.onnx (float32) does not move at all.

Adds uniform noise of +-eps to dog.jpg's letterboxed tensor (as
yolov8_reference.py makes it) five times and prints the truck's score:

  1e-07 int8 truck [0.459  0.5136 0.4852 0.4814 0.4722] fp32 truck [0.2904 ...]

  gst-launch-1.0 filesrc location=dog.jpg ! jpegdec ! videoconvert \\
      ! video/x-raw,format=RGB ! filesink location=/tmp/dog.rgb
  /tmp/refvenv/bin/python int8_sensitivity.py MODELS_DIR /tmp/dog.rgb
"""

import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

from yolov8_reference import letterbox_centred

TRUCK = 7


def main():
    models, rgb = sys.argv[1], sys.argv[2]
    frame = np.fromfile(rgb, dtype=np.uint8).reshape(576, 768, 3)
    canvas, _, _ = letterbox_centred(Image.fromarray(frame), 640, 640)
    x = np.ascontiguousarray((canvas / 255.0).transpose(2, 0, 1)[None]).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    int8 = ort.InferenceSession(f"{models}/yolov8n_int8.onnx", options, providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(f"{models}/yolov12n.onnx", options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for eps in [1e-7, 1e-6, 1e-5]:
        scores = {"int8": [], "fp32": []}
        for _ in range(5):
            noisy = (x + rng.uniform(-eps, eps, x.shape)).astype(np.float32)
            for name, session in (("int8", int8), ("fp32", fp32)):
                scores[name].append(session.run(None, {"images": noisy})[0][0][4 + TRUCK].max())
        print(eps, "int8 truck", np.round(scores["int8"], 4), "fp32 truck", np.round(scores["fp32"], 4))


if __name__ == "__main__":
    main()
