#!/usr/bin/env bash
# A heavier model batched: yolov12n edited into a dynamic-batch
# model (scripts/make-dynamic-batch.py) and its precision and CUDA-graph
# variants, on the GPU machine after scripts/gpu-stage.sh and the stash of its
# models (.gpu-stage/heavy, see docs/performance.md, "A heavier model"):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run heavy
# Models: $HEAVY_MODELS (default /tmp/gpu/heavy) with yolov12n_dynbatch.onnx
# and yolov12n_dynbatch_fp16.onnx; the fixed-batch export from $GPU_DATA.
# (a) One pipeline_bench run, STREAMS (16) streams of dog_1080p.mp4: decode
#     only, then full for each variant (fp32, tf32, fp16, fp32 + graph,
#     fp16 + graph at max-batch-size MAX_BATCH (32); the fixed-batch export with
#     a pool of 4 sessions, the earlier baseline): fps, fps / decode-only,
#     added latency, largest batch. Informational.
# (b) Every frame of the clip through each variant (one stream, inferpublish
#     JSON lines), compared with fp32 (scripts/compare-detections.py): tf32
#     and fp16 "close", the graphs "equal" to the same precision without,
#     the fixed-batch pool "same" as the edited model.
# (b) runs first, so a slow benchmark never starves the verdicts.
# Writes under $OUT (or /tmp/gpu-heavy) and prints the tables and a PASS/FAIL
# table last; exit status 1 if an accuracy check failed.
# Without a GPU (a dry run of the script itself): DECODER=avdec_h264
# PROVIDERS=cpu FRAMES=5 BENCH=0 GPU_APP=<dir with compare-detections.py>
# GPU_DATA=../shared HEAVY_MODELS=/tmp/heavy-models.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-heavy}
mkdir -p "$out"
export CUDAINFER_SHARED_DIR=$GPU_DATA
app=${GPU_APP:-$(cd "$(dirname "$0")" && pwd)}
heavy=${HEAVY_MODELS:-/tmp/gpu/heavy}
clip=$GPU_DATA/media/dog_1080p.mp4
streams=${STREAMS:-16}
batch=${MAX_BATCH:-32}
loops=${LOOPS:-1}
decoder=${DECODER:-nvh264dec}
providers=${PROVIDERS:-cuda}
frames=${FRAMES:-}
expect_frames=${FRAMES:-300}
fp32=$heavy/yolov12n_dynbatch.onnx
fp16=$heavy/yolov12n_dynbatch_fp16.onnx
for m in "$fp32" "$fp16"; do
  if [ ! -f "$m" ]; then
    echo "gpu-heavy: FAIL: no $m. Make the models (docs/performance.md, \"A heavier model\"), stage them with" \
      "scripts/gpu-stage.sh and stash them: bash .gpu-stage/heavy/stash.sh (or set HEAVY_MODELS)" >&2
    exit 2
  fi
done
# Every step is bounded by its own limit and by what is left of TOTAL_TIMEOUT
# (seconds, default 330), so the whole script ends within about 6 minutes.
deadline=$(($(date +%s) + ${TOTAL_TIMEOUT:-330}))
limit() { # the step's own limit in seconds
  local left=$((deadline - $(date +%s)))
  if [ "$left" -lt "$1" ]; then echo $((left > 5 ? left : 5)); else echo "$1"; fi
}

# Name and trtinfer properties of each variant; the graphs last, as a failed
# capture ends the benchmark (CUDA graphs are experimental).
names=(fixed-pool fp32 tf32 fp16 fp32-graph fp16-graph)
props=(
  "model=$GPU_DATA/models/yolov12n.onnx sessions=4"
  "model=$fp32 max-batch-size=$batch"
  "model=$fp32 max-batch-size=$batch tf32=true"
  "model=$fp16 max-batch-size=$batch"
  "model=$fp32 max-batch-size=$batch cuda-graph=true"
  "model=$fp16 max-batch-size=$batch cuda-graph=true"
)

# (b) first: the verdicts. Detections of every frame, one variant at a time.
for i in "${!names[@]}"; do
  name=${names[$i]}
  # shellcheck disable=SC2086 # the properties are words for gst-launch
  timeout -k 10 "$(limit "${LAUNCH_TIMEOUT:-45}")" gst-launch-1.0 -q filesrc location="$clip" ! qtdemux ! h264parse \
    ! "$decoder" ${frames:+! identity eos-after=$frames} ! cudapreprocess \
    ! trtinfer model-type=yolov8 providers="$providers" confidence-threshold=0.25 nms-threshold=0.45 \
    ${props[$i]} ! inferpublish location="$out/$name.jsonl" ! fakesink > "$out/$name.log" 2>&1
  rc=$?
  lines=$(wc -l < "$out/$name.jsonl" 2>/dev/null || echo 0)
  # FRAMES (a dry run): the decoder drains a few more after identity's EOS.
  if [ $rc = 0 ] && { [ "$lines" = "$expect_frames" ] || { [ -n "$frames" ] && [ "$lines" -ge "$frames" ]; }; }; then
    verdict "detections of $name" PASS "$lines frames"
  else
    verdict "detections of $name" FAIL "rc=$rc, $lines of $expect_frames frames: $(grep -m1 -E 'ERROR|error' -A1 "$out/$name.log" | tr '\n' ' ' | cut -c1-300)"
  fi
done
python3 "$app/compare-detections.py" \
  "tf32 vs fp32:close:$out/fp32.jsonl:$out/tf32.jsonl" \
  "fp16 vs fp32:close:$out/fp32.jsonl:$out/fp16.jsonl" \
  "fp32 + graph vs fp32:equal:$out/fp32.jsonl:$out/fp32-graph.jsonl" \
  "fp16 + graph vs fp16:equal:$out/fp16.jsonl:$out/fp16-graph.jsonl" \
  "fixed batch (pool of 4) vs fp32 dynamic batch:same:$out/fp32.jsonl:$out/fixed-pool.jsonl" \
  > "$out/accuracy.md" 2> "$out/accuracy.log"
while IFS='|' read -r _ name _ _ _ _ _ _ _ _ _ result _; do
  name=$(echo "$name" | xargs)
  verdict "accuracy: $name" "$(echo "$result" | xargs | cut -d' ' -f1)" "see the accuracy table"
done < <(grep '^| [a-z]' "$out/accuracy.md" | grep -v '^| variant ')
[ -s "$out/accuracy.md" ] || verdict "accuracy comparison" FAIL "$(head -3 "$out/accuracy.log" | tr '\n' ' ')"

# (a) Throughput, one invocation: every row measured in the same run.
if [ "${BENCH:-1}" = 1 ]; then
  variant_args=()
  for i in "${!names[@]}"; do variant_args+=(--variant "${names[$i]}:${props[$i]}"); done
  decoder_args=()
  [ "$decoder" = nvh264dec ] || decoder_args=(--decoder "$decoder")
  timeout -k 10 "$(limit "${BENCH_TIMEOUT:-180}")" "$app/pipeline_bench" "$clip" "$fp32" --loops "$loops" \
    --streams "$streams" --modes decode,full --infer "model-type=yolov8 providers=$providers" \
    "${decoder_args[@]}" "${variant_args[@]}" > "$out/bench.md" 2> "$out/bench.log"
  rc=$?
  bench_rows=$(grep -c '^| \(decode\|full\)' "$out/bench.md")
  verdict "pipeline_bench, $streams streams, ${#names[@]} variants (informational)" \
    "$([ $rc = 0 ] && [ "$bench_rows" = $((${#names[@]} + 1)) ] && echo PASS || echo FAIL)" \
    "rc=$rc, $bench_rows of $((${#names[@]} + 1)) rows$([ $rc = 0 ] || echo ": $(grep -m1 -E 'panicked|error' -A1 "$out/bench.log" | tr '\n' ' ' | cut -c1-300)")"
fi

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
echo
echo "## yolov12n batched: $streams streams of dog_1080p.mp4 (${gpu:-no GPU}; decoder $decoder, providers $providers)"
if [ -f "$out/bench.md" ]; then
  echo
  echo "### Throughput: one pipeline_bench run (decode-only and every variant in one process, one after the other)"
  echo "| variant | fps | fps / decode-only | added latency p50 ms | p99 ms | largest batch |"
  echo "|---|---:|---:|---:|---:|---:|"
  grep '^| \(decode\|full\)' "$out/bench.md" | awk -F'|' '{
    v = $2; gsub(/^ +| +$/, "", v); sub(/^full /, "", v)
    printf "| %s | %s | %s | %s | %s | %s |\n", v, $6, $7, $8, $9, $10 }'
fi
echo
echo "### Detections against fp32 (dynamic batch, GPU), every frame"
cat "$out/accuracy.md"
echo
echo "| check | verdict | detail |"
echo "|---|---|---|"
printf '%s\n' "${verdicts[@]}"
! printf '%s\n' "${verdicts[@]}" | grep -v informational | grep -q "| FAIL |"
