#!/usr/bin/env bash
# Live overload on one GPU, run on the GPU machine under ../shared/gpu/run.sh
# after scripts/gpu-stage.sh:
#   N=180 bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run overload
# pipeline_bench --live at N streams of dog_1080p.mp4 (YOLOX-nano, dynamic
# batch, one shared session), one run per policy, each at most LIVE_SECONDS
# (default 30) s: overload=block (every frame inferred), overload=skip with
# latency-budget=BUDGET_MS (default 100), and interval=1 (every other frame
# inferred, block). N is meant to be 1.5 x the capacity gpu-live.sh found.
# Prints each run's LIVE line (p99 decoder-to-sink, lost, late, skipped) and
# stage table; the verdict for skip: p99 within the budget, frames skipped.
# Writes logs under $OUT (or /tmp/gpu-overload).
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-overload}
mkdir -p "$out"
export CUDAINFER_SHARED_DIR=$GPU_DATA
clip=$GPU_DATA/media/dog_1080p.mp4
model=$GPU_DATA/models/yolox_nano_dynbatch.onnx
n=${N:?give N, the number of streams}
budget=${BUDGET_MS:-100}
seconds=${LIVE_SECONDS:-30}
base=${INFER:-max-batch-size=32}
run() { # name, trtinfer properties
  timeout -k 10 $((seconds + 60)) "$GPU_APP/pipeline_bench" "$clip" "$model" --live --streams "$n" \
    --loops 8 --seconds "$seconds" --latency-ms "$budget" --infer "$base $2" \
    > "$out/overload-$1.md" 2> "$out/overload-$1.log"
  local rc=$? line
  line=$(grep -o "^LIVE streams=.*" "$out/overload-$1.md" | head -1)
  verdicts+=("| $1 ($2) | rc=$rc | ${line:-no result, see overload-$1.log} |")
}
run block "overload=block"
run skip "overload=skip latency-budget=$budget"
run interval1 "overload=block interval=1"
for name in block skip interval1; do
  echo "## $name"
  sed -n '/^| stage /,/^mean batch size/p' "$out/overload-$name.md"
done
echo
echo "| run | exit | LIVE line |"
echo "|---|---|---|"
printf '%s\n' "${verdicts[@]}"
