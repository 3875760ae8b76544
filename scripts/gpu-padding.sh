#!/usr/bin/env bash
# batch-padding on the GPU (issue 15), under ../shared/gpu/run.sh after
# scripts/gpu-stage.sh:
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-padding.sh
# 1. YOLOX-nano (dynamic batch, max-batch-size=32) at 16 streams as fast as
#    they decode: decode-only, full with batch-padding=max, full with
#    power-of-two, in one run (batches fill: padding should not matter).
# 2. The live benchmark (gpu-live.sh) at LIVE_STREAMS (default 64,150) for
#    LIVE_SECONDS (default 20) s each, with max and with power-of-two.
set -u
out=${OUT:-/tmp/gpu-padding}
mkdir -p "$out"
export CUDAINFER_SHARED_DIR=$GPU_DATA
clip=$GPU_DATA/media/dog_1080p.mp4
model=$GPU_DATA/models/yolox_nano_dynbatch.onnx
for padding in max power-of-two; do
  modes=full
  [ $padding = max ] && modes=decode,full
  timeout -k 10 180 "$GPU_APP/pipeline_bench" "$clip" "$model" --streams 16 --loops 2 --modes "$modes" \
    --infer "max-batch-size=32 batch-padding=$padding" > "$out/bench-$padding.md" 2> "$out/bench-$padding.log"
  echo "bench $padding rc=$?"
done
for padding in max power-of-two; do
  OUT="$out/live-$padding" INFER="max-batch-size=32 batch-padding=$padding" \
    LIVE_STREAMS=${LIVE_STREAMS:-64,150} LIVE_SECONDS=${LIVE_SECONDS:-20} \
    bash "$GPU_APP/gpu-live.sh" > "$out/live-$padding.md" 2>&1
  echo "live $padding rc=$?"
done
for padding in max power-of-two; do
  echo
  echo "### 16 streams, batch-padding=$padding"
  grep '^|' "$out/bench-$padding.md"
  echo
  echo "### live, batch-padding=$padding"
  grep -E '^(\||LIVE|###)' "$out/live-$padding.md" | grep -v '^|---'
done
