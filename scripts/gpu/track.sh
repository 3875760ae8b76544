#!/usr/bin/env bash
# infertrack on the GPU path, run on the GPU machine under ../shared/gpu/run.sh
# after scripts/gpu-stage.sh (which stages the plugin and this script):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run track
# dog_1080p.mp4 through nvh264dec ! cudapreprocess ! trtinfer providers=cuda !
# infertrack, CUDA frames end to end; infertrack logs each frame's tracks
# (GST_DEBUG=infertrack:6). PASS: the pipeline ends cleanly on CUDA caps, all
# 300 frames are tracked, and the dog, the bicycle and the car (or truck) each
# carry exactly one id through the clip, three distinct ids (the rule the CPU
# test asserts). Prints a PASS/FAIL table; exits 1 on any FAIL.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-track}
mkdir -p "$out"
media=$GPU_DATA/media
models=$GPU_DATA/models
limit=${TRACK_TIMEOUT:-120}

GST_DEBUG=infertrack:6,cudapreprocess:4 GST_DEBUG_NO_COLOR=1 timeout -k 10 "$limit" gst-launch-1.0 -q \
  filesrc location="$media/dog_1080p.mp4" ! qtdemux ! h264parse ! nvh264dec ! \
  cudapreprocess ! trtinfer model="$models/yolox_nano.onnx" labels="$models/coco-labels.txt" providers=cuda ! \
  infertrack ! "video/x-raw(memory:CUDAMemory)" ! fakesink > "$out/track.txt" 2>&1
rc=$?
row "nvh264dec ! cudapreprocess ! trtinfer providers=cuda ! infertrack (CUDA caps)" \
  "$([ $rc = 0 ] && echo PASS || echo FAIL)" "rc=$rc (124/137: timed out after $limit s), log in $out/track.txt"

frames=$(grep -c "tracks at " "$out/track.txt")
row "frames tracked" "$([ "$frames" = 300 ] && echo PASS || echo FAIL)" "$frames of 300"

all_ids=()
for labels in "dog" "bicycle" "car|truck"; do
  # The ids of this object's detections over the clip (label:id:state).
  ids=$(grep -o "tracks at .*" "$out/track.txt" | grep -oE "\b($labels):[0-9]+" | cut -d: -f2 | sort -u)
  seen=$(grep -o "tracks at .*" "$out/track.txt" | grep -cE "\b($labels):[0-9]+")
  n=$(echo "$ids" | grep -c .)
  # One id a line: split on purpose.
  # shellcheck disable=SC2206
  all_ids+=($ids)
  row "$labels: one id through the clip" "$([ "$n" = 1 ] && [ "$seen" = 300 ] && echo PASS || echo FAIL)" \
    "ids: $(echo $ids), in $seen of 300 frames"
done
distinct=$(printf '%s\n' "${all_ids[@]}" | sort -u | grep -c .)
row "three distinct ids" "$([ "$distinct" = 3 ] && echo PASS || echo FAIL)" "${all_ids[*]}"

echo "| check | verdict | detail |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
printf '%s\n' "${rows[@]}" | grep -q "| FAIL |" && exit 1
exit 0
