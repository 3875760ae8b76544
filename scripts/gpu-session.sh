#!/usr/bin/env bash
# Runs this session's GPU checks one after the other, each under its own
# folder of $OUT (or /tmp/gpu-session), and prints each one's table:
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-session.sh [CHECK...]
# CHECK: models fp16 overlay track publish (default: all).
set -u
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(models fp16 overlay track publish)
for c in "${checks[@]}"; do
  start=$SECONDS
  OUT="$out/$c" timeout -k 10 "${CHECK_TIMEOUT:-420}" bash "$GPU_APP/gpu-$c.sh" > "$out/$c.md" 2>&1
  echo "## $c: rc=$? in $((SECONDS - start)) s" >> "$out/summary.md"
done
cat "$out/summary.md"
