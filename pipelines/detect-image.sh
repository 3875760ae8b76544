#!/usr/bin/env bash
# Detections on one JPEG; with GST_DEBUG=trtinfer:5 the log shows the model
# input that cudapreprocess learnt and the detections per frame.
# Usage: pipelines/detect-image.sh IMAGE.jpg MODEL.onnx [LABELS.txt]
set -euo pipefail
image=$1 model=$2 labels=${3:-}
gst-launch-1.0 \
  filesrc location="$image" ! jpegdec ! videoconvert \
  ! cudapreprocess \
  ! trtinfer model="$model" ${labels:+labels="$labels"} \
  ! fakesink
