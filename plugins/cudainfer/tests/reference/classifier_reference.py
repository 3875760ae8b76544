#!/usr/bin/env python3
"""Independent reference classes of MobileNetV2 (ImageNet, 1001 classes,
index 0 the background) on one picture, for tests/families_others.rs.

Written from the model facts alone (shared models README), with Pillow,
numpy and onnxruntime, none of the plugin's code. The frame is the picture
as GStreamer decodes it (`jpegdec ! videoconvert` to RGB, run here through
gst-launch-1.0), the frame the plugin is given in the tests. It is stretched
to 224x224 with Pillow's antialiased bilinear filter, each channel as a
float32 image: the classes move with the resampling (Pillow's 8-bit
resize, which rounds, moves malamute by 0.03, nearest-neighbour makes it
the top class at 0.41 as the models README has it), so the reference
resamples as cudapreprocess does, without rounding. RGB, x / 127.5 - 1,
NCHW float32. The output is already softmaxed.

Not needed at test time: its output is committed as a JSON file.

  python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install onnxruntime numpy pillow
  /tmp/refvenv/bin/python classifier_reference.py MODELS_DIR dog.jpg > ../data/mobilenetv2_dog.reference.json
"""

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL = "mobilenetv2_1.0_224_float.onnx"
LABELS = "imagenet_labels_1001.txt"


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models")
    parser.add_argument("image")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    labels = open(os.path.join(args.models, LABELS)).read().splitlines()
    frame = gstreamer_frame(args.image).astype(np.float32)
    channels = [np.asarray(Image.fromarray(frame[..., c], mode="F").resize((224, 224),
                                                                          Image.BILINEAR))
                for c in range(3)]
    x = (np.stack(channels) / 127.5 - 1.0)[None].astype(np.float32)
    session = ort.InferenceSession(os.path.join(args.models, MODEL),
                                   providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {session.get_inputs()[0].name: x})
    row = probs[0]
    assert abs(row.sum() - 1.0) < 1e-3, "the model's output is a distribution"
    top = np.argsort(-row, kind="stable")[: args.top]
    print(json.dumps({
        "model": MODEL,
        "image": os.path.basename(args.image),
        "classes": [{"class_id": int(i), "label": labels[i], "confidence": float(row[i])}
                    for i in top],
    }, indent=2))


if __name__ == "__main__":
    main()
