#!/usr/bin/python3
"""Prints the detections of trtinfer for every frame of an image or video.

Runs

    filesrc ! decodebin ! videoconvert ! cudapreprocess ! trtinfer ! appsink

and reads each frame's results back with stock GStreamer APIs only: the
GstVideoRegionOfInterestMeta that trtinfer numbers 0..n-1, each with a
"detection" parameter structure (label, class-id, confidence).

Output, one header line per frame and one line per object:

    frame 0 pts 0:00:00.000000000: 3 detections
      bicycle class-id=1 confidence=0.808 box=[59,133 513x298]

Needs PyGObject (Debian: python3-gi, gir1.2-gst-plugins-base-1.0) and the
plugin on GST_PLUGIN_PATH. ONNX Runtime is found through ORT_DYLIB_PATH,
which defaults to this checkout's .ort/libonnxruntime.so. Exits 1 on a
pipeline error, 2 on bad arguments.
"""

import argparse
import os
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstVideo  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir():
    """$CUDAINFER_SHARED_DIR, else <repo>/../shared, else /work/shared."""
    candidates = [os.environ.get("CUDAINFER_SHARED_DIR"), REPO_ROOT.parent / "shared", "/work/shared"]
    for c in candidates:
        if c and (Path(c) / "models" / "yolox_nano.onnx").exists():
            return Path(c)
    return None


def quote(value):
    """Quotes a value for gst_parse_launch."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def frame_detections(buf):
    """The detections on one buffer, in trtinfer's order (ids 0..n-1)."""
    found = []
    i = 0
    while True:
        meta = GstVideo.buffer_get_video_region_of_interest_meta_id(buf, i)
        if meta is None:
            break
        param = meta.get_param("detection")
        label = GLib.quark_to_string(meta.roi_type)
        class_id, confidence = None, None
        if param is not None:
            label = param.get_string("label") or label
            ok, value = param.get_uint("class-id")
            class_id = value if ok else None
            ok, value = param.get_double("confidence")
            confidence = value if ok else None
        found.append((label, class_id, confidence, meta.x, meta.y, meta.w, meta.h))
        i += 1
    return found


def format_time(t):
    if t == Gst.CLOCK_TIME_NONE:
        return "none"
    s, ns = divmod(t, Gst.SECOND)
    return f"{s // 3600}:{s // 60 % 60:02}:{s % 60:02}.{ns:09}"


def format_detection(d):
    label, class_id, confidence, x, y, w, h = d
    conf = "?" if confidence is None else f"{confidence:.3f}"
    cid = "?" if class_id is None else str(class_id)
    return f"  {label} class-id={cid} confidence={conf} box=[{x},{y} {w}x{h}]"


def main(argv=None):
    shared = shared_dir()
    default = (lambda rel: str(shared / rel)) if shared else (lambda rel: None)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", nargs="?", default=default("media/dog.jpg"), help="image or video file (default: dog.jpg)")
    p.add_argument("model", nargs="?", default=default("models/yolox_nano.onnx"), help="ONNX model")
    p.add_argument("labels", nargs="?", default=default("models/coco-labels.txt"), help="label file")
    p.add_argument("--providers", default="cpu", help="trtinfer providers (default: cpu)")
    args = p.parse_args(argv)
    if not (args.input and args.model and args.labels):
        p.error("test data not found: give INPUT MODEL LABELS or set CUDAINFER_SHARED_DIR")

    os.environ.setdefault("ORT_DYLIB_PATH", str(REPO_ROOT / ".ort" / "libonnxruntime.so"))
    Gst.init(None)
    description = (
        f"filesrc location={quote(args.input)} ! decodebin ! videoconvert ! cudapreprocess "
        f"! trtinfer model={quote(args.model)} labels={quote(args.labels)} providers={quote(args.providers)} "
        "! appsink name=sink sync=false emit-signals=true"
    )
    try:
        pipeline = Gst.parse_launch(description)
    except GLib.Error as e:
        print(f"error: cannot build the pipeline: {e.message}", file=sys.stderr)
        return 1

    frames = 0

    def on_sample(sink):
        nonlocal frames
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        buf = sample.get_buffer()
        found = frame_detections(buf)
        pts = format_time(buf.pts)
        lines = [f"frame {frames} pts {pts}: {len(found)} detections"]
        lines += [format_detection(d) for d in found]
        print("\n".join(lines), flush=True)
        frames += 1
        return Gst.FlowReturn.OK

    pipeline.get_by_name("sink").connect("new-sample", on_sample)
    bus = pipeline.get_bus()
    status = 0
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        status = 1
    msg = bus.timed_pop_filtered(
        Gst.CLOCK_TIME_NONE if status == 0 else 100 * Gst.MSECOND,
        Gst.MessageType.ERROR | Gst.MessageType.EOS,
    )
    if msg is not None and msg.type == Gst.MessageType.ERROR:
        err, debug = msg.parse_error()
        print(f"error from {msg.src.get_path_string()}: {err.message}", file=sys.stderr)
        if debug:
            print(f"debug: {debug}", file=sys.stderr)
        status = 1
    elif status != 0:
        print("error: the pipeline failed to start", file=sys.stderr)
    pipeline.set_state(Gst.State.NULL)
    if status == 0 and frames == 0:
        print("error: no frame came out", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
