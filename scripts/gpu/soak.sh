#!/usr/bin/env bash
# GPU soak, run on the GPU machine under ../shared/gpu/run.sh:
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run soak [SECONDS] [STREAMS]
# STREAMS (16) streams of dog_1080p.mp4, each looped by a flushing seek at
# its end, through nvh264dec ! cudapreprocess ! trtinfer providers=cuda for
# SECONDS (630), in one process (soak_bench); the process's RSS and the GPU's
# memory are sampled every 5 s. Writes soak-gpu.{md,csv,png,log} under $OUT
# (or /tmp/gpu-soak) and prints the summary table.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-soak}
mkdir -p "$out"
seconds=${1:-630}
streams=${2:-16}
"$GPU_APP/soak_bench" "$GPU_DATA/media/dog_1080p.mp4" "$GPU_DATA/models/yolox_nano_dynbatch.onnx" \
  --streams "$streams" --seconds "$seconds" --sample-seconds 5 --warm-up-seconds 60 \
  --csv "$out/soak-gpu.csv" --plot "$out/soak-gpu.png" > "$out/soak-gpu.md" 2> "$out/soak-gpu.log"
rc=$?
cat "$out/soak-gpu.md"
tail -3 "$out/soak-gpu.log"
echo "soak_bench rc=$rc"
exit $rc
