#!/usr/bin/env bash
# Frames held too long: the peak GPU memory of 300 frames queued after trtinfer,
# against 300 frames queued straight from the decoder. Run on the GPU machine
# (gpu-check.sh step 5, or alone):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run queue-memory
# Needs $GPU_DATA/{models,media}, gst-launch-1.0 on PATH with nvh264dec and the
# plugin, and nvidia-smi. Writes $OUT/queue-memory.md (and a log per pipeline);
# prints the table and last a line "VERDICT queue-memory PASS|FAIL ...";
# exits 0 on PASS, 1 on FAIL.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
# dog_1080p.mp4 is 300 frames at 30 fps: about 10 s a pipeline with sync=true,
# so the queue fills within the first second and drains at the clock's pace.
limit=${QUEUE_MEMORY_RUN_TIMEOUT:-25}
src="filesrc location=$GPU_DATA/media/dog_1080p.mp4 ! qtdemux ! h264parse ! nvh264dec"
infer="cudapreprocess ! trtinfer model=$GPU_DATA/models/yolox_nano_dynbatch.onnx providers=cuda"
queue="queue max-size-buffers=300 max-size-bytes=0 max-size-time=0"
sink="fakesink sync=true"

gpu_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | awk '{ s += $1 } END { print s + 0 }'; }

# Polls nvidia-smi every 0.2 s in the background while PIPELINE runs, and
# keeps the process's peak (per-process used_memory) and the device's peak
# over its idle use (the fallback where the process list shows no pids, as
# in a container without the host's pid namespace). Sets own_NAME, dev_NAME
# and rc_NAME (124 when it ran past $limit s).
measure() {
  local name=$1 pipeline=$2 log=$out/queue-memory-$1.log
  local apps=$out/queue-memory-$1.apps dev=$out/queue-memory-$1.dev
  local idle pid timed_out=0
  idle=$(gpu_used)
  echo "$pipeline" > "$log"
  # gst-launch takes the description as separate words (one quoted
  # argument is a syntax error); the descriptions hold no glob characters.
  local -a words
  read -ra words <<< "$pipeline"
  gst-launch-1.0 "${words[@]}" >> "$log" 2>&1 &
  pid=$!
  (while :; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits; sleep 0.2; done) > "$apps" 2>&1 &
  local apps_poll=$!
  (while :; do gpu_used; sleep 0.2; done) > "$dev" 2>&1 &
  local dev_poll=$!
  local deadline=$((SECONDS + limit))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      kill -INT "$pid"; sleep 3; kill -KILL "$pid" 2>/dev/null
      timed_out=1
      break
    fi
    sleep 0.2
  done
  wait "$pid"
  local rc=$?
  [ $timed_out = 1 ] && rc=124
  kill "$apps_poll" "$dev_poll" 2>/dev/null
  wait "$apps_poll" "$dev_poll" 2>/dev/null
  printf -v "own_$name" '%s' "$(awk -F', *' -v p="$pid" '$1 == p && $2 ~ /^[0-9]+$/ && $2 > m { m = $2 } END { print m + 0 }' "$apps")"
  printf -v "dev_$name" '%s' "$(awk -v i="$idle" '$1 ~ /^[0-9]+$/ && $1 - i > m { m = $1 - i } END { print m + 0 }' "$dev")"
  printf -v "rc_$name" '%s' "$rc"
}

cases=(E A C B D)
declare -A what=(
  [E]="nvh264dec ! fakesink"
  [A]="nvh264dec ! queue(300) ! fakesink"
  [C]="nvh264dec ! cudapreprocess ! trtinfer ! fakesink"
  [B]="nvh264dec ! cudapreprocess ! trtinfer ! queue(300) ! fakesink"
  [D]="nvh264dec ! cudapreprocess ! trtinfer keep-tensor=true ! queue(300) ! fakesink"
)
measure E "$src ! $sink"
measure A "$src ! $queue ! $sink"
measure C "$src ! $infer ! $sink"
measure B "$src ! $infer ! $queue ! $sink"
measure D "$src ! $infer keep-tensor=true ! $queue ! $sink"

# One method for all five: the process's own figure where every run had one.
method=own
for c in "${cases[@]}"; do
  v=own_$c
  [ "${!v}" -gt 0 ] || method=dev
done
peak() { local v=${method}_$1; echo "${!v}"; }
# D (the old behaviour) is for comparison: its failure is reported, not judged.
failed=""
for c in E A C B; do
  v=rc_$c
  [ "${!v}" = 0 ] || failed+="$c (rc ${!v}, queue-memory-$c.log) "
done
decoder=$(($(peak A) - $(peak E)))
inference=$(($(peak B) - $(peak C)))
kept=$(($(peak D) - $(peak C)))
# The target: with inference the queued frames cost what the decoder's own
# frames cost (within 10 %, and 64 MiB for the pools' granularity).
allowed=$(awk -v d="$decoder" 'BEGIN { printf "%d", 1.1 * d + 64 }')

{
  echo "## Peak GPU memory: 300 queued 1080p frames (dog_1080p.mp4, fakesink sync=true)"
  echo
  if [ $method = own ]; then
    echo "Per-process used_memory (nvidia-smi --query-compute-apps), polled every 0.2 s; trtinfer's cases include the ONNX Runtime session."
  else
    echo "The process list had no figure for every run: device memory.used over its idle value before each run, polled every 0.2 s."
  fi
  echo
  echo "| case | pipeline | peak MiB | process MiB | device − idle MiB | rc |"
  echo "|---|---|---|---|---|---|"
  for c in "${cases[@]}"; do
    o=own_$c d=dev_$c r=rc_$c
    echo "| $c | ${what[$c]} | $(peak "$c") | ${!o} | ${!d} | ${!r} |"
  done
  echo
  echo "| what the 300 queued frames cost | MiB |"
  echo "|---|---|"
  echo "| decoder alone, A − E | $decoder |"
  echo "| after trtinfer, B − C | $inference |"
  echo "| after trtinfer keep-tensor=true (the old behaviour), D − C | $kept |"
  echo "| allowed for B − C: 1.1 × (A − E) + 64 | $allowed |"
} > "$out/queue-memory.md"
cat "$out/queue-memory.md"
echo
detail="B−C = $inference MiB vs 1.1×(A−E)+64 = $allowed MiB (A−E = $decoder, D−C = $kept with keep-tensor=true; $method)"
# shellcheck disable=SC2154 # rc_D is set by name (rc_$label) in measure().
[ "$rc_D" = 0 ] || detail+="; D failed (rc $rc_D, queue-memory-D.log)"
if [ -n "$failed" ]; then
  echo "VERDICT queue-memory FAIL pipelines failed: $failed; $detail"
  exit 1
elif [ "$inference" -le "$allowed" ]; then
  echo "VERDICT queue-memory PASS $detail"
else
  echo "VERDICT queue-memory FAIL $detail"
  exit 1
fi
