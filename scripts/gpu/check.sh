#!/usr/bin/env bash
# The GPU check, run on the GPU machine under ../shared/gpu/run.sh:
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run check [LOOPS] [STREAMS] [TRTINFER_PROPS]
# e.g. gpu-check.sh 3 1,2,4,8,16,32 "max-batch-size=32"
# Writes logs and the fps plot under $OUT (or /tmp/gpu-check) and prints a
# verdict table and the benchmark table last. Every step that runs trtinfer is
# bounded by `timeout` (limits below, seconds, overridable), so that a stall
# shows as a FAIL instead of eating the session.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
loops=${1:-3}
streams=${2:-1,2,4,8,16,32}
infer_props=${3:-}
export CUDAINFER_SHARED_DIR=$GPU_DATA
models=$GPU_DATA/models
media=$GPU_DATA/media

nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv > "$out/gpu.txt" 2>&1

# 1. The elements load, and nvh264dec keeps frames on the GPU through both.
timeout 60 gst-inspect-1.0 cudapreprocess > "$out/inspect-cudapreprocess.txt" 2>&1
timeout 60 gst-inspect-1.0 trtinfer > "$out/inspect-trtinfer.txt" 2>&1
launch_limit=${LAUNCH_TIMEOUT:-90}
GST_DEBUG=cudapreprocess:4,trtinfer:4,nvh264dec:4 timeout -k 10 "$launch_limit" gst-launch-1.0 -q \
  filesrc location="$media/dog_1080p.mp4" ! qtdemux ! h264parse ! nvh264dec ! \
  cudapreprocess ! trtinfer model="$models/yolox_nano.onnx" providers=cuda ! fakesink \
  > "$out/launch.txt" 2>&1
rc=$?
ctx=$(grep -c "as the pipeline's gst.cuda.context" "$out/launch.txt")
prov=$(grep -o "with the cuda execution provider" "$out/launch.txt" | head -1)
caps=$(grep -o "memory:CUDAMemory" "$out/launch.txt" | head -1)
verdict "gst-launch nvh264dec ! cudapreprocess ! trtinfer providers=cuda" \
  "$([ $rc = 0 ] && [ "$ctx" -ge 1 ] && [ -n "$prov" ] && echo PASS || echo FAIL)" \
  "$(exit_note $rc "$launch_limit"), primary context shared: $ctx, provider: ${prov:-none}, ${caps:-no CUDA caps seen}"

# 2. CUDA path against CPU path on the same decoded frames.
tests_limit=${TESTS_TIMEOUT:-420}
timeout -k 10 "$tests_limit" "$GPU_APP/gpu-tests" --test-threads=1 --nocapture > "$out/gpu-tests.txt" 2>&1
rc=$?
while read -r line; do
  name=$(echo "$line" | awk '{print $2}')
  verdict "$name" "$(pass_fail $rc)" "${line#VERDICT $name }"
done < <(grep -o "VERDICT.*" "$out/gpu-tests.txt")
[ $rc = 0 ] || verdict "gpu-tests" FAIL "$(exit_note $rc "$tests_limit"), see gpu-tests.txt: $(grep -m1 -E 'panicked|FAILED' "$out/gpu-tests.txt")"

# 2b. GStreamer >= 1.24 only: the same equality tests with the wait for the
#     decoder's CUDA stream switched off (a debug switch), to show whether
#     the race it prevents shows here. A failure there is the race, not a
#     defect of the product; the verdicts above are with the wait on.
wait_mode=$(grep -o "producer-stream wait [a-z]*" "$out/launch.txt" | head -1)
verdict "producer-stream wait (GStreamer $(gst-launch-1.0 --version | sed -n 's/.*GStreamer \([0-9.]*\).*/\1/p' | head -1))" \
  "$([ -n "$wait_mode" ] && echo PASS || echo FAIL)" "${wait_mode:-no log line}"
if [ -n "${PRODUCER_WAIT_AB:-}" ]; then
  CUDAINFER_NO_PRODUCER_WAIT=1 timeout -k 10 "$tests_limit" "$GPU_APP/gpu-tests" --test-threads=1 --nocapture \
    cuda_tensors_equal_cpu_tensors cuda_detections_equal_cpu_detections > "$out/gpu-tests-no-wait.txt" 2>&1
  rc=$?
  while read -r line; do
    name=$(echo "$line" | awk '{print $2}')
    verdict "$name without the producer wait" "$([ $rc = 0 ] && echo "race not seen" || echo "RACE SEEN")" "${line#VERDICT $name }"
  done < <(grep -o "VERDICT.*" "$out/gpu-tests-no-wait.txt")
  [ $rc = 0 ] || verdict "without the producer wait" "RACE SEEN" "$(grep -m1 -E 'panicked|FAILED' -A1 "$out/gpu-tests-no-wait.txt" | tr '\n' ' ')"
fi

# 3. Inference alone (no decoding or pre-processing): what the model costs
#    per batch, in full fp32 and with TF32.
timeout -k 10 240 "$GPU_APP/infer_bench" "$models/yolox_nano_dynbatch.onnx" --batches 1,16,32 \
  --configs fp32,tf32 > "$out/infer.md" 2> "$out/infer.log"
rc=$?
verdict "infer_bench yolox_nano_dynbatch fp32/tf32, batches 1,16,32" \
  "$(pass_fail $rc)" "table below ($(exit_note $rc 240))"

# 4. Throughput and latency against N concurrent streams, decode-only and
#    pre-processing only (nvh264dec ! cudapreprocess) and the full pipeline
#    for each N in one run, with the plot.
nvidia-smi dmon -s um -d 1 > "$out/dmon.txt" 2>&1 &
dmon=$!
bench_limit=${BENCH_TIMEOUT:-420}
timeout -k 10 "$bench_limit" "$GPU_APP/pipeline_bench" "$media/noise_1080p.mp4" "$models/yolox_nano_dynbatch.onnx" \
  --loops "$loops" --streams "$streams" --modes decode,preprocess,full --infer "$infer_props" \
  --plot "$out/fps-vs-streams.png" > "$out/bench.md" 2> "$out/bench.log"
bench_rc=$?
kill $dmon 2>/dev/null
verdict "pipeline_bench noise_1080p x$loops, N=$streams, trtinfer $infer_props" \
  "$(pass_fail $bench_rc)" "table below, plot fps-vs-streams.png ($(exit_note $bench_rc "$bench_limit"))"

# 5. Frames held downstream: the GPU memory of 300 frames queued after
#    trtinfer against 300 queued straight from nvh264dec (five pipelines of
#    about 10 s each; gpu-queue-memory.sh says how it measures and judges).
memory_limit=${QUEUE_MEMORY_TIMEOUT:-150}
timeout -k 10 "$memory_limit" bash "$(gpu_script queue-memory)" > "$out/queue-memory.txt" 2>&1
rc=$?
line=$(grep -o "VERDICT queue-memory.*" "$out/queue-memory.txt" | tail -1)
line=${line#VERDICT queue-memory [A-Z]* }
verdict "queue-memory: 300 queued frames after trtinfer vs after nvh264dec" "$(pass_fail $rc)" \
  "${line:-no result, see queue-memory.txt}; $(exit_note $rc "$memory_limit")"

echo
echo "## GPU check ($(head -2 "$out/gpu.txt" | tail -1); GStreamer $(gst-launch-1.0 --version | sed -n 's/^GStreamer \(.*\)/\1/p'))"
echo "| check | verdict | detail |"
echo "|---|---|---|"
printf '%s\n' "${verdicts[@]}"
echo
cat "$out/infer.md"
echo
cat "$out/queue-memory.md" 2>/dev/null
echo
cat "$out/bench.md"
[ $bench_rc = 0 ] || tail -5 "$out/bench.log"
