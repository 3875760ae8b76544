#!/usr/bin/python3
"""Reads trtinfer's GstAnalytics relation meta through GObject introspection.

On GStreamer >= 1.24 with the GstAnalytics typelib (Debian:
gir1.2-gst-plugins-bad-1.0), the relation meta must hold the same objects
(label, box, confidence) as the region-of-interest metas, in the same order,
and a classifier's classes as one classification entry. Skipped, saying
why, on older GStreamer or without the typelib.

    GST_PLUGIN_PATH=<dir of libgstcudainfer.so> /usr/bin/python3 tests/python/test_analytics_meta.py
"""

import os
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # keep the source tree clean under meson test
sys.path.insert(0, str(HERE))
from print_detections import REPO_ROOT, frame_detections, quote, shared_dir  # noqa: E402

import gi  # noqa: E402

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402

try:
    gi.require_version("GstAnalytics", "1.0")
    from gi.repository import GstAnalytics  # noqa: E402
except (ValueError, ImportError) as e:
    GstAnalytics = None
    NO_ANALYTICS = f"no GstAnalytics typelib ({e}): install gir1.2-gst-plugins-bad-1.0 (GStreamer >= 1.24)"


# The README's snippet ("Metadata", GstAnalytics).
def relation_meta_entries(buf):
    rmeta = GstAnalytics.buffer_get_analytics_relation_meta(buf)
    objects, classes = [], []
    for i in range(GstAnalytics.relation_get_length(rmeta)):
        ok, od = rmeta.get_od_mtd(i)
        if ok:
            _, x, y, w, h, confidence = od.get_location()
            objects.append((GLib.quark_to_string(od.get_obj_type()), x, y, w, h, confidence))
        ok, cls = rmeta.get_cls_mtd(i)
        if ok:
            classes.append([(GLib.quark_to_string(cls.get_quark(k)), cls.get_level(k)) for k in range(cls.get_length())])
    return objects, classes


def roi_classes(buf):
    """The classifier's classes from the region-of-interest metas."""
    found, i = [], 0
    while (meta := GstVideo.buffer_get_video_region_of_interest_meta_id(buf, i)) is not None:
        c = meta.get_param("classification")
        if c is not None:
            found.append((c.get_string("label"), c.get_double("confidence")[1]))
        i += 1
    return found


def one_buffer(description):
    """Runs description (ending in appsink name=sink) on one image; its buffer."""
    pipeline = Gst.parse_launch(description)
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    sample = sink.emit("try-pull-sample", 60 * Gst.SECOND)
    msg = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is not None:
        raise AssertionError(f"pipeline error: {msg.parse_error()[0].message}")
    assert sample is not None, "no frame came out"
    return sample.get_buffer()


class AnalyticsMeta(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if GstAnalytics is None:
            raise unittest.SkipTest(NO_ANALYTICS)
        os.environ.setdefault("ORT_DYLIB_PATH", str(REPO_ROOT / ".ort" / "libonnxruntime.so"))
        Gst.init(None)
        if Gst.version()[:2] < (1, 24):
            raise unittest.SkipTest(f"GStreamer {Gst.version_string()} has no analytics meta (1.24 or later has)")
        cls.shared = shared_dir()
        if cls.shared is None:
            raise unittest.SkipTest("test data not found: set CUDAINFER_SHARED_DIR")

    def trtinfer(self, properties):
        return one_buffer(
            f"filesrc location={quote(self.shared / 'media/dog.jpg')} ! jpegdec ! videoconvert "
            f"! video/x-raw,format=RGB ! cudapreprocess ! trtinfer {properties} ! appsink name=sink sync=false"
        )

    def test_objects_match_the_region_of_interest_metas(self):
        buf = self.trtinfer(
            f"model={quote(self.shared / 'models/yolox_nano.onnx')} labels={quote(self.shared / 'models/coco-labels.txt')}"
        )
        rois = [(label, x, y, w, h, confidence) for label, _, confidence, x, y, w, h in frame_detections(buf)]
        objects, classes = relation_meta_entries(buf)
        for o in objects:
            print("  od", o)
        self.assertGreaterEqual(len(rois), 3)
        self.assertEqual(objects, rois)
        self.assertEqual(classes, [])
        self.assertTrue({"dog", "bicycle", "car"} <= {o[0] for o in objects}, objects)

    def test_classes_match_the_region_of_interest_metas(self):
        buf = self.trtinfer(
            f"model={quote(self.shared / 'models/mobilenetv2_1.0_224_float.onnx')} model-type=classifier "
            f"labels={quote(self.shared / 'models/imagenet_labels_1001.txt')} classifier-top-k=3 confidence-threshold=0.01"
        )
        expected = roi_classes(buf)
        objects, classes = relation_meta_entries(buf)
        print("  cls", classes)
        self.assertEqual(len(expected), 3)
        self.assertEqual(objects, [])
        self.assertEqual(classes, [expected])


if __name__ == "__main__":
    unittest.main(verbosity=2)
