#!/usr/bin/env bash
# The CUDA overlay against the CPU overlay, run on the GPU machine under
# ../shared/gpu/run.sh after scripts/gpu-stage.sh (which stages the overlay
# test binary as overlay-tests):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run overlay
# dog_1080p.mp4 is decoded by nvh264dec (NV12, and through cudaconvert I420,
# RGBA and BGRx), inferred on the GPU, then a tee gives each frame to
# `inferoverlay` on CUDA memory (then cudadownload) and, after cudadownload,
# to `inferoverlay` on a system-memory copy with the same metas. Every byte
# of the two drawn frames is compared. PASS: they are equal (max difference
# 0): both paths paint the same primitive list with integer arithmetic only,
# so any difference is a defect, not rounding.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-overlay}
mkdir -p "$out"
export CUDAINFER_SHARED_DIR=$GPU_DATA
limit=${OVERLAY_TIMEOUT:-300}
timeout -k 10 "$limit" "$GPU_APP/overlay-tests" --test-threads=1 --nocapture > "$out/overlay-tests.txt" 2>&1
rc=$?
echo "## CUDA overlay vs CPU overlay ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1); GStreamer $(gst-launch-1.0 --version | sed -n 's/^GStreamer \(.*\)/\1/p'))"
echo "| check | verdict | frames | detections | max diff | mean diff | share of differing bytes |"
echo "|---|---|---:|---:|---:|---:|---:|"
found=0
while read -r line; do
  found=1
  name=$(echo "$line" | awk '{print $2}')
  val() { echo "$line" | grep -o "$1=[^ ]*" | cut -d= -f2; }
  verdict=$([ "$(val max_diff)" = 0 ] && echo PASS || echo FAIL)
  echo "| $name | $verdict | $(val frames) | $(val detections) | $(val max_diff) | $(val mean_diff) | $(val differing_share) |"
done < <(grep -o "VERDICT overlay-.*" "$out/overlay-tests.txt")
skipped=$(grep -c "skipped:" "$out/overlay-tests.txt")
if [ $rc != 0 ] || [ $found = 0 ]; then
  case $rc in 124 | 137) note="timed out after $limit s" ;; *) note="rc=$rc" ;; esac
  echo "| overlay-tests | FAIL | | | | | $note, skipped=$skipped; see $out/overlay-tests.txt: $(grep -m1 -E 'panicked|FAILED' -A1 "$out/overlay-tests.txt" | tr '\n' ' ') |"
  exit 1
fi
echo
grep -E "^test .*(ok|FAILED)$" "$out/overlay-tests.txt"
