#!/usr/bin/env bash
# Object detection on an H.264 MP4 with every frame and tensor on the GPU:
# NVDEC decode into CUDA memory, the CUDA pre-processing kernel, ONNX
# Runtime's CUDA provider and output decoding on the GPU.
# Usage: pipelines/detect-file-gpu.sh VIDEO.mp4 MODEL.onnx [LABELS.txt]
# Needs an NVIDIA GPU, gst-plugins-bad's nvcodec (nvh264dec), NVRTC
# (libnvrtc.so) and onnxruntime-gpu through ORT_DYLIB_PATH (see the README).
set -euo pipefail
video=$1 model=$2 labels=${3:-}
gst-launch-1.0 \
  filesrc location="$video" ! qtdemux ! h264parse ! nvh264dec \
  ! cudapreprocess \
  ! trtinfer model="$model" ${labels:+labels="$labels"} providers=cuda \
  ! fakesink
