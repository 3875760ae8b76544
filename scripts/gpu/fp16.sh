#!/usr/bin/env bash
# The fp16 and CPU-fallback GPU check, run on the GPU machine like
# gpu-check.sh (stage with scripts/gpu-stage.sh, then under ../shared/gpu/run.sh):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run fp16
# (a) yolov8n_int8.onnx (a quantised model: ConvInteger) under
#     providers=cuda: trtinfer must warn that ONNX Runtime runs nodes on the
#     CPU, naming them; yolox_nano.onnx must not warn.
# (b) YOLOX-nano's fp16 twin on the GPU path (fp16 tensors from the
#     pre-processing kernel, fp16 output converted on the GPU) against the
#     CPU path, every frame of dog_1080p.mp4: IoU and confidence table; and
#     the float32 GPU checks that the tensor change touches (tensors and
#     detections equal to the CPU path's).
# Writes logs under $OUT (or /tmp/gpu-fp16) and prints a PASS/FAIL table last.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-fp16}
mkdir -p "$out"
export CUDAINFER_SHARED_DIR=$GPU_DATA
models=$GPU_DATA/models
media=$GPU_DATA/media
limit=${LAUNCH_TIMEOUT:-120}

# (a) The CPU-fallback warning.
launch() { # model, extra properties, log
  timeout -k 10 "$limit" gst-launch-1.0 filesrc location="$media/dog_1080p.mp4" ! qtdemux ! h264parse \
    ! nvh264dec ! identity eos-after=30 ! cudapreprocess ! trtinfer model="$models/$1" $2 providers=cuda \
    ! fakesink > "$3" 2>&1
}
launch yolov8n_int8.onnx "model-type=yolov8" "$out/int8.txt"
rc=$?
warning=$(grep -o "ONNX Runtime runs [0-9]* of the model's [0-9]* nodes on the CPU[^:]*" "$out/int8.txt" | head -1)
verdict "yolov8n_int8 providers=cuda warns of CPU nodes" \
  "$([ -n "$warning" ] && echo PASS || echo FAIL)" "rc=$rc; ${warning:-no warning, see int8.txt}"
launch yolox_nano.onnx "" "$out/fp32.txt"
rc=$?
quiet=$(grep -c "nodes on the CPU" "$out/fp32.txt")
verdict "yolox_nano providers=cuda does not warn" \
  "$([ $rc = 0 ] && [ "$quiet" = 0 ] && echo PASS || echo FAIL)" "rc=$rc, CPU-node warnings: $quiet"

# (b) fp16 on the GPU against the CPU; float32 GPU paths unchanged.
tests_limit=${TESTS_TIMEOUT:-420}
for t in fp16_cuda_detections_equal_cpu_detections cuda_detections_equal_cpu_detections \
  cuda_tensors_equal_cpu_tensors; do
  timeout -k 10 "$tests_limit" "$GPU_APP/gpu-tests" --test-threads=1 --nocapture --exact "$t" \
    > "$out/$t.txt" 2>&1
  rc=$?
  line=$(grep -o "VERDICT.*" "$out/$t.txt" | head -1)
  if [ $rc = 0 ] && [ -n "$line" ]; then
    verdict "$t" PASS "${line#VERDICT }"
  else
    verdict "$t" FAIL "rc=$rc: $(grep -m1 -E 'panicked|FAILED|skipped' -A1 "$out/$t.txt" | tr '\n' ' ')"
  fi
done

echo
echo "| check | verdict | details |"
echo "| --- | --- | --- |"
printf '%s\n' "${verdicts[@]}"
echo
[ -n "$warning" ] && echo "warning seen: $(grep -o "ONNX Runtime runs [0-9]* of the model.*" "$out/int8.txt" | head -1)"
! printf '%s\n' "${verdicts[@]}" | grep -q "| FAIL |"
