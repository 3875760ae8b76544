#!/usr/bin/env bash
# The model families' GPU check, run on the
# GPU machine under ../shared/gpu/run.sh after scripts/gpu-stage.sh:
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run models [STREAMS]
# 1. GPU = CPU for the families and secondary inference (tests/pipeline_gpu.rs):
#    yolov8 (yolov12n, a fixed batch of 1: the default pool of 4 sessions on
#    their own CUDA streams), whole-frame classifier, raw outputs, crops
#    classified on the GPU.
# 2. yolov12n at STREAMS (default 16) streams of dog_1080p.mp4: decode-only,
#    full with one session, full with the default pool (4), in one run.
# Writes under $OUT (or /tmp/gpu-models) and prints a verdict table.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-models}
mkdir -p "$out"
streams=${1:-16}
export CUDAINFER_SHARED_DIR=$GPU_DATA
models=$GPU_DATA/models
media=$GPU_DATA/media

timeout -k 10 ${TESTS_TIMEOUT:-300} "$GPU_APP/gpu-tests" --test-threads=1 --nocapture \
  yolov8_cuda_detections_equal_cpu_detections classifier_on_gpu_tensors_equals_cpu \
  crops_classified_on_the_gpu_equal_cpu raw_outputs_on_gpu_tensors_equal_cpu > "$out/gpu-tests.txt" 2>&1
rc=$?
while read -r line; do
  name=$(echo "$line" | awk '{print $2}')
  verdict "$name" "$([ $rc = 0 ] && echo PASS || echo "see log")" "${line#VERDICT $name }"
done < <(grep -o "VERDICT.*" "$out/gpu-tests.txt")
[ $rc = 0 ] || verdict "gpu-tests (models)" FAIL "rc=$rc: $(grep -m1 -E 'panicked|FAILED' -A1 "$out/gpu-tests.txt" | tr '\n' ' ')"

# The pool as the log says it: yolov12n on cuda, sessions unset.
GST_DEBUG=trtinfer:4 timeout -k 10 90 gst-launch-1.0 -q filesrc location="$media/dog_1080p.mp4" ! qtdemux ! \
  h264parse ! nvh264dec ! cudapreprocess ! trtinfer model="$models/yolov12n.onnx" model-type=yolov8 providers=cuda ! \
  fakesink > "$out/pool-launch.txt" 2>&1
rc=$?
pool=$(grep -o "batches of up to [0-9]*, [0-9]* session(s)" "$out/pool-launch.txt" | head -1)
verdict "yolov12n providers=cuda, sessions unset" "$([ $rc = 0 ] && [ -n "$pool" ] && echo PASS || echo FAIL)" "rc=$rc, ${pool:-no log line}"

for sessions in 1 4; do
  modes=full
  [ $sessions = 1 ] && modes=decode,full
  timeout -k 10 ${BENCH_TIMEOUT:-240} "$GPU_APP/pipeline_bench" "$media/dog_1080p.mp4" "$models/yolov12n.onnx" \
    --loops 1 --streams "$streams" --modes "$modes" --infer "model-type=yolov8 sessions=$sessions" \
    > "$out/bench-sessions-$sessions.md" 2> "$out/bench-sessions-$sessions.log"
  rc=$?
  verdict "pipeline_bench yolov12n N=$streams sessions=$sessions" "$([ $rc = 0 ] && echo PASS || echo FAIL)" "rc=$rc, table below"
done

echo
echo "## Model families on the GPU ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); GStreamer $(gst-launch-1.0 --version | sed -n 's/^GStreamer \(.*\)/\1/p'))"
echo "| check | verdict | detail |"
echo "|---|---|---|"
printf '%s\n' "${verdicts[@]}"
for sessions in 1 4; do
  echo
  echo "### yolov12n, sessions=$sessions"
  cat "$out/bench-sessions-$sessions.md"
done
