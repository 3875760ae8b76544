#!/usr/bin/env bash
# cudainfer-run's recording and removal on the GPU path, run under
# ../shared/gpu/run.sh (staged by scripts/gpu-stage.sh, as gpu-service.sh):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run svc2
# 1. dog_1080p.mp4 (300 frames, 10 s) as one camera, --once --no-sync
#    --record-segment 2, hardware decoding and encoding (nvh264dec, CUDA
#    frames, inferoverlay's kernel, nvh264enc, splitmuxsink).
# 2. The same file looped in real time and recorded (60 s segments), then
#    SIGTERM after 6 s: the segment under way must be finalised.
# 3. Four looping cameras with the API; one added and removed 5 times.
# PASS: the service is on the GPU path; run 1 exits 0 with 300 JSON lines and
# at least 5 segments <id>-NNNNN.mp4 that all decode, 300 frames in all,
# none over 2 s (61 frames); run 2 exits 0 and its one segment decodes with as
# many frames as JSON lines; in run 3 every DELETE answers 204 within 1 s.
# Prints a PASS/FAIL table; logs, JSON lines and recordings under $OUT.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-svc2}
rm -rf "$out" && mkdir -p "$out"
models=$GPU_DATA/models
media=$GPU_DATA/media
app=${GPU_APP:-$(dirname "$0")}
unset GST_PLUGIN_PATH
export GST_REGISTRY_1_0=$out/registry.bin
common=(--model "$models/yolox_nano.onnx" --labels "$models/coco-labels.txt" --decode gpu --providers cuda --no-status)
clip="file://$media/dog_1080p.mp4"
# Frames of an MP4, decoded by whatever decoder GStreamer ranks first; 0 when
# it does not play (an unfinalised MP4 has no index).
frames() {
  gst-launch-1.0 -v filesrc location="$1" ! qtdemux ! h264parse ! decodebin ! fakesink silent=false 2>&1 |
    grep -c 'fakesink0.*chain' || true
}

# 1. Segments.
mkdir -p "$out/rec1"
timeout 120 "$app/cudainfer-run" "${common[@]}" --json "$out/run1.jsonl" --record "$out/rec1" \
  --record-segment 2 --once --no-sync "$clip" 2> "$out/run1.log"
rc1=$?
grep -q 'decode=gpu providers=cuda' "$out/run1.log"; gpu_ok=$?
row "service on the GPU path (nvh264dec, providers=cuda)" "$([ $gpu_ok = 0 ] && echo PASS || echo FAIL)" \
  "$(grep -o 'event=service_starting.*' "$out/run1.log" | head -1)"
lines1=$(wc -l < "$out/run1.jsonl" 2>/dev/null || echo 0)
row "run 1 (--once --no-sync): exit 0, 300 JSON lines" "$(pass test "$rc1" = 0 -a "$lines1" = 300)" "rc=$rc1 lines=$lines1"
total=0; worst=0; bad=0; n=0; names_ok=1
id1=$(grep -o 'event=camera_started camera=[^ ]*' "$out/run1.log" | head -1 | cut -d= -f3)
for f in "$out"/rec1/*; do
  [ "$(basename "$f")" = "$(printf '%s-%05d.mp4' "$id1" "$n")" ] || names_ok=0
  c=$(frames "$f"); n=$((n + 1))
  total=$((total + c)); [ "$c" -gt "$worst" ] && worst=$c; [ "$c" = 0 ] && bad=$((bad + 1))
done
row "2 s segments named <id>-NNNNN.mp4, all playable" "$(pass test "$n" -ge 5 -a "$bad" = 0 -a "$names_ok" = 1)" \
  "$n segments, $bad unplayable, names in order: $names_ok"
row "segments hold the 300 frames, none over 2 s" "$(pass test "$total" = 300 -a "$worst" -le 61)" "total=$total largest=$worst"

# 2. SIGTERM mid-segment.
mkdir -p "$out/rec2"
"$app/cudainfer-run" "${common[@]}" --json "$out/run2.jsonl" --record "$out/rec2" "$clip" 2> "$out/run2.log" &
pid=$!
sleep 6
kill -TERM "$pid"
for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; rc2=timeout; else wait "$pid"; rc2=$?; fi
lines2=$(wc -l < "$out/run2.jsonl" 2>/dev/null || echo 0)
seg2=$(ls "$out"/rec2 | wc -l)
c2=$(frames "$out/rec2/$id1-00000.mp4")
row "SIGTERM mid-segment: exit 0, one finalised segment, one frame per result" \
  "$(pass test "$rc2" = 0 -a "$seg2" = 1 -a "$c2" = "$lines2" -a "$c2" -gt 0)" "rc=$rc2 segments=$seg2 frames=$c2 lines=$lines2"

# 3. DELETE on the GPU path.
port=18081
"$app/cudainfer-run" "${common[@]}" --json "$out/run3.jsonl" --http "127.0.0.1:$port" \
  --allow-dir "$media" "$clip" "$clip" "$clip" "$clip" 2> "$out/run3.log" &
pid=$!
sleep 20
python3 - "$port" "$media/dog_1080p.mp4" > "$out/run3-deletes.txt" <<'PY'
import json, sys, time, urllib.request as u
base, path = f"http://127.0.0.1:{sys.argv[1]}", sys.argv[2]
times, codes = [], []
for _ in range(5):
    body = json.dumps({"uri": "file://" + path}).encode()
    cam = json.load(u.urlopen(u.Request(base + "/cameras", data=body, method="POST"), timeout=30))
    time.sleep(5)
    t = time.monotonic()
    r = u.urlopen(u.Request(f"{base}/cameras/{cam['id']}", method="DELETE"), timeout=30)
    times.append(time.monotonic() - t); codes.append(r.status)
print(f"codes={','.join(map(str, codes))} slowest={max(times):.2f}")
PY
kill -TERM "$pid"; wait "$pid"
del=$(cat "$out/run3-deletes.txt")
slowest=$(echo "$del" | grep -o 'slowest=[^ ]*' | cut -d= -f2)
row "DELETE while 4 cameras run: 204 within 1 s (5 rounds)" \
  "$(pass python3 -c "import sys; sys.exit(0 if '$del'.startswith('codes=204,204,204,204,204') and float('${slowest:-99}') < 1 else 1)")" "$del"

echo "| check | result | detail |"
echo "| --- | --- | --- |"
printf '%s\n' "${rows[@]}"
