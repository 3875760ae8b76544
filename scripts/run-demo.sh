#!/usr/bin/env bash
# Demo: cudainfer-run on dog_1080p.mp4, each frame's detections as one JSON
# line on stdout (the service's logs on stderr).
#
#   scripts/run-demo.sh [VIDEO [MODEL [LABELS]]]
#
# Installs the dependencies (scripts/setup-deps.sh), builds
# target/release/cudainfer-run and runs it on the clip once, as fast as it goes. Test data comes from
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
cargo build --release -p cudainfer-run
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$top/.ort/libonnxruntime.so}"
target=${CARGO_TARGET_DIR:-$top/target}
exec "$target/release/cudainfer-run" --model "$model" --labels "$labels" --once --no-sync --json - \
  "file://$(realpath "$video")"
