#!/usr/bin/env bash
# Live cameras and two GPUs, run on the GPU machine under
# ../shared/gpu/run.sh after scripts/gpu-stage.sh:
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run live            # one GPU
#   GPUS=0,1 bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run live   # nvidia-h200-x2
# One GPU (GPUS unset or one device): the live capacity of dog_1080p.mp4 and
#   then of noise_1080p.mp4, 1080p30 streams (YOLOX nano, dynamic batch, one
#   shared session): one `pipeline_bench --live --find-capacity` each, which
#   bisects the largest N in LIVE_BOUNDS (default 48,176) that passes, for
#   decode-only and for the full pipeline, at most LIVE_RUNS (default 4) runs
#   a mode of at most LIVE_SECONDS (default 25) s each, within
#   CAPACITY_BUDGET (default 235) s per clip (the program starts no run that
#   would overrun it; `timeout` is the backstop), so the whole fits in about
#   9 minutes. PASS for an N: the sinks back to the sources' rate after
#   start-up, then nothing lost, late or passed on uninferred, and p99
#   decoder-to-sink latency <= 100 ms. Prints the CAPACITY lines as verdict rows, the runs tried,
#   and the stage tables (where decoder-to-sink time goes) at the full
#   pipeline's capacity. See docs/gpu-check/live-capacity.md.
#   LIVE_STREAMS=64,128 runs those N one by one instead (LIVE_SECONDS default
#   40), dog_1080p.mp4 only, and prints the largest that passed.
# Two GPUs (GPUS=0,1): the decoder element of each device; a branch on GPU 1
#   gives the detections of GPU 0 frame for frame; a decoder on GPU 1 before
#   cudapreprocess device-id=0 is refused naming both devices; throughput
#   (non-live) 16 streams on GPU 0 against 32 on both, decode-only and full,
#   one after the other, PASS when full on two >= 1.9 x full on one; and the
#   live run at LIVE2_STREAMS (default 300) over both GPUs; then
#   cudainfer-run --gpus with SERVICE2_CAMERAS (default 128) file cameras.
# Every step is bounded by `timeout`; either branch fits in about 9 minutes.
# Writes logs under $OUT (or /tmp/gpu-live) and prints verdicts and tables.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-live}
mkdir -p "$out"
export CUDAINFER_SHARED_DIR=$GPU_DATA
models=$GPU_DATA/models
media=$GPU_DATA/media
clip=$media/dog_1080p.mp4
model=$models/yolox_nano_dynbatch.onnx
infer=${INFER:-max-batch-size=32}
gpus=${GPUS:-0}
live_seconds=${LIVE_SECONDS:-40}
capacity_seconds=${LIVE_SECONDS:-25}
capacity_budget=${CAPACITY_BUDGET:-235}
# The clip's frame rate as GStreamer reads it (the live rate).
rate=$(timeout 30 gst-discoverer-1.0 "$clip" 2>/dev/null | grep -o 'Frame rate: [0-9/]*' | head -1)

# One live run at N=$1 on GPUs $2; the LIVE line says pass or fail.
live_run() {
  local n=$1 on=$2 tag=$3
  timeout -k 10 $((live_seconds + 45)) "$GPU_APP/pipeline_bench" "$clip" "$model" --live --streams "$n" \
    --gpus "$on" --loops 4 --seconds "$live_seconds" --infer "$infer" \
    > "$out/live-$tag-$n.md" 2> "$out/live-$tag-$n.log"
  local rc=$?
  local line
  line=$(grep -o "^LIVE streams=.*" "$out/live-$tag-$n.md" | head -1)
  verdict "live N=$n on GPU(s) $on" "$(echo "$line" | grep -q 'pass=true' && echo PASS || echo FAIL)" \
    "$(exit_note $rc $((live_seconds + 45))); ${line:-no result, see live-$tag-$n.log}"
  echo "$line" | grep -q 'pass=true'
}

# The capacity search on clip $1 (a file in $media): decode-only and full.
capacity_run() {
  local name=$1 tag
  tag=$(basename "$name" .mp4)
  timeout -k 10 $((capacity_budget + 20)) "$GPU_APP/pipeline_bench" "$media/$name" "$model" --live --find-capacity \
    --streams "${LIVE_BOUNDS:-48,176}" --max-runs "${LIVE_RUNS:-4}" --budget-s "$capacity_budget" \
    --gpus "$gpus" --loops 8 --seconds "$capacity_seconds" --infer "$infer" \
    > "$out/capacity-$tag.md" 2> "$out/capacity-$tag.log"
  local rc=$?
  local f=$out/capacity-$tag.md decode full ratio
  decode=$(grep -o '^CAPACITY mode=decode .*' "$f" | head -1)
  full=$(grep -o '^CAPACITY mode=full .*' "$f" | head -1)
  ratio=$(grep -o '^CAPACITY ratio=.*' "$f" | head -1)
  verdict "$name: live capacity, decode only" "$([ -n "$decode" ] && echo measured || echo FAIL)" \
    "${decode:-no result, see capacity-$tag.log}; $(exit_note $rc $((capacity_budget + 20)))"
  local n
  n=$(echo "$full" | sed -n 's/.* streams=\([0-9]*\).*/\1/p')
  verdict "$name: live capacity, full pipeline (goal >= 150)" \
    "$([ -z "$n" ] && echo FAIL || { [ "$n" -ge 150 ] && echo PASS || echo "below goal"; })" \
    "${full:-no result, see capacity-$tag.log}"
  verdict "$name: full / decode-only capacity" "$([ -n "$ratio" ] && echo measured || echo FAIL)" "${ratio:-no result}"
}

if [ "${gpus#*,}" = "$gpus" ] && [ -z "${LIVE_STREAMS:-}" ]; then
  for name in dog_1080p.mp4 noise_1080p.mp4; do
    capacity_run "$name"
  done
elif [ "${gpus#*,}" = "$gpus" ]; then
  best=none
  for n in $(echo "${LIVE_STREAMS:-64,128,150,160}" | tr , ' '); do
    live_run "$n" "$gpus" one && best=$n
  done
  verdict "largest N live on GPU $gpus (0 dropped, p99 <= 100 ms)" "$([ "$best" != none ] && [ "$best" -ge 150 ] && echo PASS || echo "below goal")" \
    "$best (goal >= 150; clip ${rate:-rate unknown})"
else
  # The same clip on GPU 0 and GPU 1: the same detections, frame for frame
  # (trtinfer logs each frame's count at TRACE).
  for d in 0 1; do
    decoder=nvh264dec
    [ $d = 0 ] || decoder=nvh264device${d}dec
    GST_DEBUG_NO_COLOR=1 GST_DEBUG=trtinfer:7,cudapreprocess:4 timeout -k 10 90 gst-launch-1.0 -q filesrc location="$clip" ! qtdemux ! h264parse ! \
      $decoder ! cudapreprocess device-id=$d ! trtinfer model="$model" providers=cuda device-id=$d ! fakesink \
      > "$out/device$d.txt" 2>&1
    echo "rc=$?" >> "$out/device$d.txt"
    grep -o '[0-9]* detections$' "$out/device$d.txt" > "$out/device$d.counts"
  done
  frames0=$(wc -l < "$out/device0.counts")
  ctx1=$(grep -c "primary context .* of CUDA device 1" "$out/device1.txt")
  same=$([ "$frames0" -gt 0 ] && cmp -s "$out/device0.counts" "$out/device1.counts" && echo yes || echo no)
  verdict "GPU 1 branch (nvh264device1dec ! cudapreprocess device-id=1 ! trtinfer device-id=1) = GPU 0" \
    "$([ "$same" = yes ] && [ "$ctx1" -ge 1 ] && grep -q rc=0 "$out/device1.txt" && echo PASS || echo FAIL)" \
    "$frames0 frames, per-frame detection counts equal: $same, device 1's primary context provided: $ctx1, $(grep rc= "$out/device1.txt")"

  # A decoder on GPU 1 before cudapreprocess device-id=0: refused, naming both.
  timeout -k 10 60 gst-launch-1.0 -q filesrc location="$clip" ! qtdemux ! h264parse ! nvh264device1dec ! \
    cudapreprocess device-id=0 ! trtinfer model="$model" providers=cuda ! fakesink > "$out/mismatch.txt" 2>&1
  said=$(grep -o "upstream decodes on CUDA device 1, but cudapreprocess device-id is 0" "$out/mismatch.txt" | head -1)
  verdict "nvh264device1dec ! cudapreprocess device-id=0 refused" "$([ -n "$said" ] && echo PASS || echo FAIL)" \
    "${said:-no such message, see mismatch.txt}"

  # Throughput: 16 streams on GPU 0, then 32 over both, non-live.
  timeout -k 10 200 "$GPU_APP/pipeline_bench" "$clip" "$model" --streams 16 --gpus 0 --modes decode,full \
    --infer "$infer" > "$out/one-gpu.md" 2> "$out/one-gpu.log"
  rc1=$?
  timeout -k 10 200 "$GPU_APP/pipeline_bench" "$clip" "$model" --streams 32 --gpus "$gpus" --modes decode,full \
    --infer "$infer" > "$out/two-gpus.md" 2> "$out/two-gpus.log"
  rc2=$?
  decoders=$(grep -o '^decoders: .*' "$out/two-gpus.md" | head -1)
  verdict "each GPU's decoder (found by cuda-device-id)" "$(echo "$decoders" | grep -q 'GPU 1 nvh264' && echo PASS || echo FAIL)" \
    "${decoders:-no line in two-gpus.md}"
  fps() { awk -F'|' -v m="$2" '$2 ~ "^ "m" $" { gsub(/ /, "", $6); print $6 }' "$1" | head -1; }
  d1=$(fps "$out/one-gpu.md" decode) f1=$(fps "$out/one-gpu.md" full)
  d2=$(fps "$out/two-gpus.md" decode) f2=$(fps "$out/two-gpus.md" full)
  ratio() { python3 -c "import sys; a, b = sys.argv[1:]; print(f'{float(a) / float(b):.3f}')" "$1" "$2" 2>/dev/null; }
  full_ratio=$(ratio "$f2" "$f1")
  verdict "decode-only fps, 32 on GPUs $gpus / 16 on GPU 0" "$([ -n "$(ratio "$d2" "$d1")" ] && echo PASS || echo FAIL)" \
    "${d2:-?} / ${d1:-?} = $(ratio "$d2" "$d1"); rc $rc1, $rc2"
  verdict "full fps, 32 on GPUs $gpus / 16 on GPU 0 (goal >= 1.9)" \
    "$(python3 -c "import sys; print('PASS' if float(sys.argv[1]) >= 1.9 else 'FAIL')" "${full_ratio:-0}" 2>/dev/null || echo FAIL)" \
    "${f2:-?} / ${f1:-?} = ${full_ratio:-?}; full / decode-only on two GPUs: $(ratio "$f2" "$d2")"

  for n in $(echo "${LIVE2_STREAMS:-300}" | tr , ' '); do
    live_run "$n" "$gpus" two || true
  done
  # The service with its cameras spread over the GPUs (--gpus), at
  # SERVICE2_CAMERAS (default 128).
  cams=${SERVICE2_CAMERAS:-128}
  mkdir -p "$out/service-gpus"
  OUT=$out/service-gpus SERVICE_FLAGS="--gpus $gpus" timeout -k 10 200 bash "$(gpu_script service)" "$cams" 60 \
    > "$out/service-gpus.md" 2>&1
  rc=$?
  verdict "cudainfer-run --gpus $gpus, $cams cameras (see service-gpus.md)" \
    "$(grep -q '| FAIL |' "$out/service-gpus.md" && echo FAIL || pass_fail $rc)" \
    "$(grep -o 'p99_ms=[0-9.]*' "$out/service-gpus.md" | head -1); $(exit_note $rc 200)"
fi

echo
echo "## Live and two GPUs ($(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs); GStreamer $(gst-launch-1.0 --version | sed -n 's/^GStreamer \(.*\)/\1/p'))"
echo "| check | verdict | detail |"
echo "|---|---|---|"
printf '%s\n' "${verdicts[@]}"
# Of a capacity search: each mode's runs and CAPACITY line, the ratio and
# the stage tables (every run's own tables stay in the file).
for f in "$out"/capacity-*.md; do
  [ -f "$f" ] || continue
  echo
  echo "### $(basename "$f" .md) (${capacity_seconds} s runs, bounds ${LIVE_BOUNDS:-48,176})"
  awk '/^### capacity, mode / { on = 1 } /^CAPACITY ratio=/ { rest = 1 } on || rest { print } /^CAPACITY mode=/ { on = 0; print "" }' "$f"
done
for f in "$out"/live-*.md "$out/one-gpu.md" "$out/two-gpus.md" "$out/service-gpus.md"; do
  [ -f "$f" ] || continue
  echo
  echo "### $(basename "$f" .md)"
  cat "$f"
done
