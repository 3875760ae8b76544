#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (corpus/<target>/) in the targets' input
format (fuzz/src/lib.rs Reader): real shapes of YOLOX-nano and its exports,
the edge cases the product refuses, and the first lines of COCO's labels.
Run from anywhere: python3 fuzz/make_seeds.py"""
import math
import os
import shutil
import struct

here = os.path.dirname(os.path.abspath(__file__))


def shape(dims):
    return bytes([len(dims)]) + b"".join(struct.pack("<q", d) for d in dims)


def string(s):
    b = s.encode()
    return bytes([len(b)]) + b


def f32(*values):
    return b"".join(struct.pack("<f", v) for v in values)


def yolox(inp, out, thr=0.3, nms=0.45, max_det=300, values=(), matching=False):
    return (bytes([1 if matching else 0]) + shape(inp) + shape(out) + f32(thr, nms)
            + struct.pack("<H", max_det) + f32(*values))


# One real-looking row (px, py, log w, log h, objectness, class scores).
ROW = (0.5, 0.25, 0.0, math.log(2), 0.9, 0.1, 0.8)
ODD = (math.nan, math.inf, -math.inf, -0.0, 1e30, -1e30, 0.95, 1.0)

YOLOX = {
    "nano_416": yolox([1, 3, 416, 416], [1, 3549, 85], values=ROW),
    "small_64": yolox([1, 3, 64, 64], [1, 84, 7], values=ROW),
    "dynamic_640": yolox([-1, 3, 640, 640], [-1, 8400, 85], values=ODD),
    "matching_rows_zero_threshold": yolox([1, 3, 32, 96], [1, 0, 6], thr=0.0, max_det=65535,
                                          values=(0.1, 0.2, 0.0, 0.0, 1.0, 1.0), matching=True),
    "nan_thresholds": yolox([1, 3, 64, 64], [1, 84, 6], thr=math.nan, nms=math.nan, values=ODD),
    "symbolic_size": yolox([1, 3, -1, -1], [1, 3549, 85]),
    "not_multiple_of_32": yolox([1, 3, 400, 416], [1, 3549, 85]),
}


def value(name, kind, dims=None, text=""):
    out = string(name) + bytes([kind])
    if kind == 4:
        out += string(text)
    if kind <= 4:
        return out + shape(dims)
    return out + string(text)


def model(inputs, outputs):
    return bytes([len(inputs), len(outputs)]) + b"".join(inputs) + b"".join(outputs)


IMAGES = value("images", 0, [1, 3, 416, 416])
OUTPUT = value("output", 0, [1, 3549, 85])
MODEL = {
    "yolox_nano": model([IMAGES], [OUTPUT]),
    "dynamic_batch": model([value("images", 0, [-1, 3, 640, 640])], [value("output", 0, [-1, 8400, 85])]),
    "two_inputs": model([IMAGES, value("other", 0, [1])], [OUTPUT]),
    "float16_output": model([IMAGES], [value("output", 1, [1, 3549, 85])]),
    "named_element": model([value("images", 4, [1, 3, 416, 416], "bfloat16")], [OUTPUT]),
    "sequence_output": model([IMAGES], [value("output", 5, text="Sequence<Tensor<f32>>")]),
    "huge_input": model([value("images", 0, [1, 3, 8192, 8192])], [OUTPUT]),
    "two_outputs": model([IMAGES], [OUTPUT, value("aux", 2, [1, 10])]),
}

coco = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]
LABELS = {
    "coco_first_lines": "".join(f"{n}\n" for n in coco).encode(),
    "blank_and_crlf": b"person\r\n\r\n  car \r\nbus\n\n\n",
    "no_final_newline": b"traffic light\nfire hydrant",
    "not_utf8": b"person\n\xff\xfe\ncar\n",
    "empty": b"",
}

for target, seeds in (("yolox_decode", YOLOX), ("model_shapes", MODEL), ("labels", LABELS)):
    folder = os.path.join(here, "corpus", target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
