#!/usr/bin/env bash
# Throughput of the CPU path on a clip, beside decode-only, in one run on one
# machine; prints a markdown table. Usage: scripts/bench-cpu.sh [clip] [model]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
shared=${CUDAINFER_SHARED_DIR:-$top/../shared}
[ -d "$shared/models" ] || shared=/work/shared
clip=${1:-$shared/media/dog_1080p.mp4}
model=${2:-$shared/models/yolox_nano.onnx}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$top/.ort/libonnxruntime.so}
(cd "$top" && cargo build --release -q)
export GST_PLUGIN_PATH=$top/target/release
frames=$( (gst-discoverer-1.0 -v "$clip" 2>/dev/null || true) | awk '/frames/ {print $NF; exit}')
frames=${frames:-300}
decode="filesrc location=$clip ! qtdemux ! h264parse ! avdec_h264"

measure() { # label, pipeline tail
  local start end
  start=$(date +%s.%N)
  gst-launch-1.0 -q $decode $2 ! fakesink sync=false >/dev/null
  end=$(date +%s.%N)
  awk -v l="$1" -v s="$start" -v e="$end" -v n="$frames" \
    'BEGIN { printf "| %s | %d | %.2f | %.1f |\n", l, n, e - s, n / (e - s) }'
}
echo "clip: $clip ($frames frames), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| pipeline | frames | seconds | fps |"
echo "| --- | ---: | ---: | ---: |"
measure "decode only (avdec_h264)" ""
measure "decode + cudapreprocess" "! cudapreprocess width=416 height=416 channel-order=bgr pad-value=114"
measure "decode + cudapreprocess + trtinfer (cpu)" "! cudapreprocess ! trtinfer model=$model"
