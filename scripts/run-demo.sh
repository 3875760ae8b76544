#!/usr/bin/env bash
# Demo: detection on dog_1080p.mp4 with the Rust example, one line per frame.
#
#   scripts/run-demo.sh [VIDEO [MODEL [LABELS]]]
#
# Installs the dependencies (scripts/setup-deps.sh), builds
# target/release/examples/detect and runs it. Test data comes from
# $CUDAINFER_SHARED_DIR, else <repo>/../shared, else /work/shared.
# ONNX Runtime: $ORT_DYLIB_PATH if set, else <repo>/.ort/libonnxruntime.so.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

shared=""
for d in "${CUDAINFER_SHARED_DIR:-}" "$top/../shared" /work/shared; do
  if [ -n "$d" ] && [ -f "$d/models/yolox_nano.onnx" ]; then
    shared=$(cd "$d" && pwd)
    break
  fi
done
if [ -z "$shared" ] && [ $# -lt 3 ]; then
  echo "test data not found: set CUDAINFER_SHARED_DIR to the folder holding models/ and media/" >&2
  exit 1
fi
video=${1:-$shared/media/dog_1080p.mp4}
model=${2:-$shared/models/yolox_nano.onnx}
labels=${3:-$shared/models/coco-labels.txt}

"$top/scripts/setup-deps.sh" >&2  # stdout: the frames only
cargo build --release --example detect
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$top/.ort/libonnxruntime.so}"
exec "$top/target/release/examples/detect" "$video" "$model" "$labels"
