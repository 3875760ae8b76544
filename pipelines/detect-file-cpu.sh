#!/usr/bin/env bash
# Object detection on a video file, all on the CPU, as fast as it goes.
# To print the detections use tests/python/print_detections.py (any
# GStreamer program reads them) or the Rust example `detect`.
# Usage: pipelines/detect-file-cpu.sh VIDEO.mp4 MODEL.onnx [LABELS.txt]
# Needs the plugin on GST_PLUGIN_PATH (or installed) and ONNX Runtime
# through ORT_DYLIB_PATH (see the README).
set -euo pipefail
video=$1 model=$2 labels=${3:-}
gst-launch-1.0 \
  filesrc location="$video" ! qtdemux ! h264parse ! avdec_h264 \
  ! cudapreprocess \
  ! trtinfer model="$model" ${labels:+labels="$labels"} confidence-threshold=0.3 \
  ! fakesink sync=false
