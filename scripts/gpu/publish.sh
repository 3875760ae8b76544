#!/usr/bin/env bash
# inferpublish on the GPU path, run on the GPU machine under ../shared/gpu/run.sh
# (plugin staged by scripts/gpu-stage.sh, as for scripts/gpu/check.sh):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run publish
# nvh264dec's CUDA frames through cudapreprocess ! trtinfer providers=cuda !
# inferpublish into a file, against the CPU path's file. PASS: both runs end
# cleanly, 300 lines each, and every line of the GPU file has the CPU line's
# labels with boxes within 2 px (the GPU path equals the CPU path, see the
# GPU check). Prints a PASS/FAIL table; logs and the files under $OUT.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-publish}
mkdir -p "$out"
models=$GPU_DATA/models
media=$GPU_DATA/media

run() { # name decoder providers; the machine has no software H.264 decoder,
  # so the CPU path takes nvh264dec's frames downloaded to system memory.
  # shellcheck disable=SC2086
  timeout -k 10 120 gst-launch-1.0 -q filesrc location="$media/dog_1080p.mp4" ! qtdemux ! h264parse ! $2 \
    ! cudapreprocess ! trtinfer model="$models/yolox_nano.onnx" labels="$models/coco-labels.txt" providers="$3" tf32=false \
    ! inferpublish source="$1" location="$out/$1.jsonl" ! fakesink > "$out/$1.log" 2>&1
}
run gpu nvh264dec cuda; gpu_rc=$?
run cpu "nvh264dec ! cudadownload ! video/x-raw" cpu; cpu_rc=$?
row "gst-launch nvh264dec ! … ! trtinfer providers=cuda ! inferpublish" "$([ $gpu_rc = 0 ] && echo PASS || echo FAIL)" \
  "rc=$gpu_rc, $(wc -l < "$out/gpu.jsonl" 2>/dev/null || echo 0) lines"
row "same on the CPU path (nvh264dec ! cudadownload, providers=cpu)" "$([ $cpu_rc = 0 ] && echo PASS || echo FAIL)" \
  "rc=$cpu_rc, $(wc -l < "$out/cpu.jsonl" 2>/dev/null || echo 0) lines"
cmp=$(python3 - "$out/gpu.jsonl" "$out/cpu.jsonl" <<'PY'
import json, sys
g = [json.loads(l) for l in open(sys.argv[1])]
c = [json.loads(l) for l in open(sys.argv[2])]
bad, worst, objects = 0, 0.0, 0
for a, b in zip(g, c):
    la = sorted((o["label"], o["box"]["x"], o["box"]["y"], o["box"]["w"], o["box"]["h"]) for o in a["objects"])
    lb = sorted((o["label"], o["box"]["x"], o["box"]["y"], o["box"]["w"], o["box"]["h"]) for o in b["objects"])
    if [o[0] for o in la] != [o[0] for o in lb] or a["frame"] != {"width": 1920, "height": 1080}:
        bad += 1
        continue
    objects += len(la)
    for x, y in zip(la, lb):
        worst = max(worst, *(abs(p - q) for p, q in zip(x[1:], y[1:])))
ok = len(g) == len(c) == 300 and bad == 0 and worst <= 2.0 and objects > 0
print(("PASS" if ok else "FAIL") + f" {len(g)} vs {len(c)} lines, {bad} differing, {objects} objects, largest box difference {worst:.3f} px")
PY
)
row "GPU lines = CPU lines (labels, boxes within 2 px)" "${cmp%% *}" "${cmp#* }"
echo "## inferpublish on the GPU ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
echo "| check | verdict | detail |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
