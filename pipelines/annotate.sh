#!/usr/bin/env bash
# An annotated MP4 of a clip: objects detected, tracked and drawn (boxes,
# labels, confidences, track ids), encoded again as H.264.
# Usage: pipelines/annotate.sh cpu|gpu VIDEO.mp4 MODEL.onnx LABELS.txt OUT.mp4 [FRAMES]
#   cpu: avdec_h264, the CPU provider, drawing on the CPU, x264enc
#        (Debian: gstreamer1.0-plugins-ugly).
#   gpu: nvh264dec, the CUDA provider, drawing on the CUDA frame in place,
#        nvh264enc where the GPU has an encoder, so the frames never leave the
#        GPU; data-centre GPUs without NVENC (H100, H200) download the drawn
#        frames for x264enc instead (needs an NVIDIA GPU, nvcodec, NVRTC and
#        onnxruntime-gpu through ORT_DYLIB_PATH).
#   FRAMES: stop after that many frames (default: the whole clip).
# Needs the plugin on GST_PLUGIN_PATH (or installed) and ONNX Runtime
# through ORT_DYLIB_PATH (see the README).
set -euo pipefail
mode=$1 video=$2 model=$3 labels=$4 out=$5 frames=${6:-}
limit=${frames:+! identity eos-after=$frames}
case $mode in
  cpu) decode="avdec_h264 ! videoconvert ! video/x-raw,format=I420" providers=cpu
       encode="x264enc speed-preset=veryfast tune=zerolatency" ;;
  gpu) decode="nvh264dec" providers=cuda
       if gst-inspect-1.0 nvh264enc > /dev/null 2>&1; then
         encode="nvh264enc"
       else
         encode="cudadownload ! videoconvert ! x264enc speed-preset=veryfast tune=zerolatency"
       fi ;;
  *) echo "usage: $0 cpu|gpu VIDEO.mp4 MODEL.onnx LABELS.txt OUT.mp4 [FRAMES]" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086 # the fragments are pipeline words
gst-launch-1.0 -q -e \
  filesrc location="$video" ! qtdemux ! h264parse ! $decode $limit \
  ! cudapreprocess ! trtinfer model="$model" labels="$labels" providers=$providers \
  ! infertrack ! inferoverlay \
  ! $encode ! h264parse ! mp4mux ! filesink location="$out"
