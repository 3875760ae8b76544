#!/usr/bin/env bash
# The GPU check, run on the GPU machine under ../shared/gpu/run.sh:
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-check.sh [LOOPS] [STREAMS] [TRTINFER_PROPS]
# e.g. gpu-check.sh 3 1,2,4,8,16,32 "max-batch-size=32"
# Writes logs and the fps plot under $OUT (or /tmp/gpu-check) and prints a
# verdict table and the benchmark table last.
set -u
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
loops=${1:-3}
streams=${2:-1,2,4,8,16,32}
infer_props=${3:-}
export CUDAINFER_SHARED_DIR=$GPU_DATA
models=$GPU_DATA/models
media=$GPU_DATA/media
verdicts=()
verdict() { verdicts+=("| $1 | $2 | $3 |"); }

nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv > "$out/gpu.txt" 2>&1

# 1. The elements load, and nvh264dec keeps frames on the GPU through both.
gst-inspect-1.0 cudapreprocess > "$out/inspect-cudapreprocess.txt" 2>&1
gst-inspect-1.0 trtinfer > "$out/inspect-trtinfer.txt" 2>&1
GST_DEBUG=cudapreprocess:4,trtinfer:4,nvh264dec:4 gst-launch-1.0 -q \
  filesrc location="$media/dog_1080p.mp4" ! qtdemux ! h264parse ! nvh264dec ! \
  cudapreprocess ! trtinfer model="$models/yolox_nano.onnx" providers=cuda ! fakesink \
  > "$out/launch.txt" 2>&1
rc=$?
ctx=$(grep -c "as the pipeline's gst.cuda.context" "$out/launch.txt")
prov=$(grep -o "with the cuda execution provider" "$out/launch.txt" | head -1)
caps=$(grep -o "memory:CUDAMemory" "$out/launch.txt" | head -1)
verdict "gst-launch nvh264dec ! cudapreprocess ! trtinfer providers=cuda" \
  "$([ $rc = 0 ] && [ "$ctx" -ge 1 ] && [ -n "$prov" ] && echo PASS || echo FAIL)" \
  "rc=$rc, primary context shared: $ctx, provider: ${prov:-none}, ${caps:-no CUDA caps seen}"

# 2. CUDA path against CPU path on the same decoded frames.
"$GPU_APP/gpu-tests" --test-threads=1 --nocapture > "$out/gpu-tests.txt" 2>&1
rc=$?
while read -r line; do
  name=$(echo "$line" | awk '{print $2}')
  verdict "$name" "$([ $rc = 0 ] && echo PASS || echo FAIL)" "${line#VERDICT $name }"
done < <(grep -o "VERDICT.*" "$out/gpu-tests.txt")
[ $rc = 0 ] || verdict "gpu-tests" FAIL "see gpu-tests.txt: $(grep -m1 -E 'panicked|FAILED' "$out/gpu-tests.txt")"

# 3. Inference alone (no decoding or pre-processing): what the model costs
#    per batch, in full fp32 and with TF32.
timeout 240 "$GPU_APP/infer_bench" "$models/yolox_nano_dynbatch.onnx" --batches 1,16,32 \
  --configs fp32,tf32 > "$out/infer.md" 2> "$out/infer.log"
rc=$?
verdict "infer_bench yolox_nano_dynbatch fp32/tf32, batches 1,16,32" \
  "$([ $rc = 0 ] && echo PASS || echo FAIL)" "table below"

# 4. Throughput and latency against N concurrent streams, decode-only and
#    pre-processing only (nvh264dec ! cudapreprocess) and the full pipeline
#    for each N in one run, with the plot.
nvidia-smi dmon -s um -d 1 > "$out/dmon.txt" 2>&1 &
dmon=$!
# Bounded, so that a stall shows as a failure instead of eating the session.
timeout "${BENCH_TIMEOUT:-420}" "$GPU_APP/pipeline_bench" "$media/noise_1080p.mp4" "$models/yolox_nano_dynbatch.onnx" \
  --loops "$loops" --streams "$streams" --modes decode,preprocess,full --infer "$infer_props" \
  --plot "$out/fps-vs-streams.png" > "$out/bench.md" 2> "$out/bench.log"
rc=$?
kill $dmon 2>/dev/null
verdict "pipeline_bench noise_1080p x$loops, N=$streams, trtinfer $infer_props" \
  "$([ $rc = 0 ] && echo PASS || echo FAIL)" "table below, plot fps-vs-streams.png"

echo
echo "## GPU check ($(head -2 "$out/gpu.txt" | tail -1))"
echo "| check | verdict | detail |"
echo "|---|---|---|"
printf '%s\n' "${verdicts[@]}"
echo
cat "$out/infer.md"
echo
cat "$out/bench.md"
[ $rc = 0 ] || tail -5 "$out/bench.log"
