#!/usr/bin/python3
"""Checks print_detections.py against media/dog.reference.json.

Runs the program on dog.jpg as a user would and parses what it prints: dog,
bicycle and car must be there with boxes within IoU 0.9 of the reference.
A pipeline error must give a non-zero exit status.

    GST_PLUGIN_PATH=<dir of libgstcudainfer.so> /usr/bin/python3 tests/python/test_print_detections.py
"""

import json
import re
import subprocess
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "print_detections.py"
sys.dont_write_bytecode = True  # keep the source tree clean under meson test
sys.path.insert(0, str(HERE))
from print_detections import shared_dir  # noqa: E402

MIN_IOU = 0.9
LINE = re.compile(
    r"^  (?P<label>\S.*?) class-id=(?P<class_id>\d+) confidence=(?P<confidence>[0-9.]+) "
    r"box=\[(?P<x>\d+),(?P<y>\d+) (?P<w>\d+)x(?P<h>\d+)\]$"
)
FRAME = re.compile(r"^frame (\d+) pts \S+: (\d+) detections$")


def run(*args):
    return subprocess.run(
        [sys.executable, str(PROGRAM), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def parse(stdout):
    """[[detection dict, ...] per frame] from the program's output."""
    frames = []
    for line in stdout.splitlines():
        if FRAME.match(line):
            frames.append([])
        elif (m := LINE.match(line)) is not None:
            d = m.groupdict()
            frames[-1].append(
                {
                    "label": d["label"],
                    "class_id": int(d["class_id"]),
                    "confidence": float(d["confidence"]),
                    "box": [int(d["x"]), int(d["y"]), int(d["x"]) + int(d["w"]), int(d["y"]) + int(d["h"])],
                }
            )
        else:
            raise AssertionError(f"unexpected output line: {line!r}")
    return frames


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


class PrintDetections(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.shared = shared_dir()
        if cls.shared is None:
            raise unittest.SkipTest("test data not found: set CUDAINFER_SHARED_DIR")

    def test_dog_jpg_matches_the_reference(self):
        result = run(self.shared / "media/dog.jpg")
        sys.stdout.write(result.stdout)
        self.assertEqual(result.returncode, 0, f"the program failed:\n{result.stderr}")
        frames = parse(result.stdout)
        self.assertEqual(len(frames), 1, "one frame for an image")
        found = frames[0]
        reference = json.loads((self.shared / "media/dog.reference.json").read_text())["detections"]
        for label in ("dog", "bicycle", "car"):
            (ref,) = [r for r in reference if r["label"] == label]
            expected = [ref["x1"], ref["y1"], ref["x2"], ref["y2"]]
            same = [d for d in found if d["label"] == label]
            self.assertTrue(same, f"no {label} printed among {found}")
            best = max(same, key=lambda d: iou(d["box"], expected))
            self.assertEqual(best["class_id"], ref["class_id"], label)
            overlap = iou(best["box"], expected)
            self.assertGreaterEqual(overlap, MIN_IOU, f"{label}: IoU {overlap:.3f} ({best} vs reference {ref})")

    def test_pipeline_error_exits_non_zero(self):
        result = run(self.shared / "media/does-not-exist.jpg")
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn("error", result.stderr)

    def test_missing_model_exits_non_zero(self):
        result = run(self.shared / "media/dog.jpg", self.shared / "models/does-not-exist.onnx")
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn("does-not-exist.onnx", result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
