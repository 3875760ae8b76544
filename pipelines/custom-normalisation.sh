#!/usr/bin/env bash
# cudapreprocess properties override what the model downstream asks for:
# here a stretched RGB tensor in 0..1 with ImageNet mean/std (for a model
# whose family preset would say otherwise).
# Usage: pipelines/custom-normalisation.sh VIDEO.mp4 MODEL.onnx
set -euo pipefail
gst-launch-1.0 \
  filesrc location="$1" ! qtdemux ! h264parse ! avdec_h264 \
  ! cudapreprocess resize-mode=stretch channel-order=rgb pixel-scale=0.00392156862745098 \
      mean="<0.485, 0.456, 0.406>" std="<0.229, 0.224, 0.225>" \
  ! trtinfer model="$2" \
  ! fakesink
