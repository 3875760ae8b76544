#!/usr/bin/env bash
# cudainfer-run on the GPU machine, run under ../shared/gpu/run.sh (staged by
# scripts/gpu-stage.sh, as for scripts/gpu/check.sh):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run service [CAMERAS] [SECONDS]
# CAMERAS (default 64) file:// cameras of dog_1080p.mp4, looped in real time
# (sync), hardware decoding (nvh264dec) and the CUDA provider, one shared
# session; plus one camera whose file is corrupted mid-run and restored later.
# /metrics is read after a warm-up and at the end. PASS: the service starts on
# the GPU path; over the measured window every good camera drops 0 frames,
# never reconnects and runs in real time (>= 28 fps); the failing camera is
# counted as reconnecting and runs again once its file is back; the p99 added
# latency is printed (the worst camera's); SIGTERM ends it with exit 0.
# Prints a PASS/FAIL table; logs, metrics and JSON lines under $OUT.
# SERVICE_FLAGS adds options (`--gpus 0,1` spreads the cameras over two GPUs).
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
cameras=${1:-64}
seconds=${2:-${SERVICE_SECONDS:-90}}
out=${OUT:-/tmp/gpu-service}
mkdir -p "$out"
models=$GPU_DATA/models
media=$GPU_DATA/media
app=${GPU_APP:-$(dirname "$0")}
port=18080
metrics() { python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$port/metrics', timeout=10).read().decode(), end='')"; }

# The binary registers the elements itself: no second copy from the plugin path.
unset GST_PLUGIN_PATH
export GST_REGISTRY_1_0=$out/registry.bin
cp "$media/dog_1080p.mp4" "$out/failing.mp4"
uris=()
for _ in $(seq "$cameras"); do uris+=("file://$media/dog_1080p.mp4"); done
uris+=("file://$out/failing.mp4")
"$app/cudainfer-run" --model "$models/${SERVICE_MODEL:-yolox_nano_dynbatch.onnx}" --labels "$models/coco-labels.txt" \
  --decode gpu --providers cuda ${SERVICE_FLAGS:-} --json "$out/results.jsonl" --http "127.0.0.1:$port" --no-status \
  "${uris[@]}" 2> "$out/service.log" &
pid=$!

sleep 20
# Cameras start in the order listed: the last is the failing one.
started=$(grep -o 'event=camera_started camera=[^ ]*' "$out/service.log" | cut -d= -f3)
failing=$(echo "$started" | sed -n "$((cameras + 1))p")
good_ids=$(echo "$started" | head -n "$cameras" | tr '\n' ',')
metrics > "$out/metrics-start.txt"
t0=$(date +%s.%N)
sleep 10
# The failing camera's source goes bad mid-run: everything after its first
# 1 MB (the rest of the video and the index) is overwritten with zeros in
# place, so the open file reads junk and every new try finds no index; then
# it is restored. (Truncating it only ended the clip early, which a looped
# file camera takes as the end of a loop, not as a failure.)
size=$(stat -c %s "$out/failing.mp4")
dd if=/dev/zero of="$out/failing.mp4" bs=1000000 seek=1 count=$(((size + 999999) / 1000000)) conv=notrunc 2> /dev/null
truncate -s "$size" "$out/failing.mp4"
sleep 15
metrics > "$out/metrics-failing.txt"
cp "$media/dog_1080p.mp4" "$out/failing.mp4"
sleep $((seconds - 45))
metrics > "$out/metrics-end.txt"
t1=$(date +%s.%N)
kill -TERM "$pid"
for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; rc=timeout; else wait "$pid"; rc=$?; fi

grep -q 'decode=gpu providers=cuda' "$out/service.log"; gpu_ok=$?
row "service on the GPU path (nvh264dec, providers=cuda)" "$([ $gpu_ok = 0 ] && echo PASS || echo FAIL)" \
  "$(grep -o 'event=service_starting.*' "$out/service.log" | head -1)"
python3 - "$out" "$good_ids" "$failing" "$t0" "$t1" > "$out/summary.txt" <<'PY'
import re, sys
out, good_ids, failing, t0, t1 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
def parse(name):
    m = {}
    for line in open(f"{out}/{name}"):
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
    return m
a, f, b = parse("metrics-start.txt"), parse("metrics-failing.txt"), parse("metrics-end.txt")
def get(m, name, cam, extra=""):
    return m.get(f'{name}{{camera="{cam}"{extra}}}', float("nan"))
good = [c for c in good_ids.split(",") if c]
window = t1 - t0
drops = sum(get(b, "cudainfer_camera_dropped_total", c) - get(a, "cudainfer_camera_dropped_total", c) for c in good)
reconn = sum(get(b, "cudainfer_camera_reconnects_total", c) - get(a, "cudainfer_camera_reconnects_total", c) for c in good)
fps = [(get(b, "cudainfer_camera_frames_out_total", c) - get(a, "cudainfer_camera_frames_out_total", c)) / window for c in good]
p99 = max(get(b, "cudainfer_camera_latency_seconds", c, ',quantile="0.99"') for c in good)
fr = get(b, "cudainfer_camera_reconnects_total", failing)
fstate = get(b, "cudainfer_camera_state", failing, ',state="running"')
ffailing = get(f, "cudainfer_camera_state", failing, ',state="running"')
fframes = get(f, "cudainfer_camera_frames_out_total", failing) - get(a, "cudainfer_camera_frames_out_total", failing)
print(f"drops={drops:.0f} reconnects={reconn:.0f} min_fps={min(fps):.2f} mean_fps={sum(fps)/len(fps):.2f} "
      f"p99_ms={p99*1e3:.1f} failing_reconnects={fr:.0f} failing_running_while_cut={ffailing:.0f} failing_frames_while_cut={fframes:.0f} "
      f"failing_running_at_end={fstate:.0f} largest_batch={b.get('cudainfer_device_largest_batch{device=\"gpu0\"}', 0):.0f} "
      f"gpu_mem_used_mib={b.get('cudainfer_gpu_memory_used_bytes{gpu=\"0\"}', 0)/2**20:.0f}")
PY
summary=$(cat "$out/summary.txt")
val() { echo " $summary" | grep -o " $1=[^ ]*" | head -1 | cut -d= -f2; }
row "$cameras good cameras: 0 frames dropped over the window" "$([ "$(val drops)" = 0 ] && echo PASS || echo FAIL)" "drops=$(val drops)"
row "good cameras never reconnect (the failing one does not touch them)" "$([ "$(val reconnects)" = 0 ] && echo PASS || echo FAIL)" "reconnects=$(val reconnects)"
row "real time: every good camera >= 28 fps" "$(python3 -c "print('PASS' if $(val min_fps) >= 28 else 'FAIL')" 2>/dev/null || echo FAIL)" "min $(val min_fps), mean $(val mean_fps) fps"
row "p99 added latency (worst camera)" "INFO" "$(val p99_ms) ms; largest batch $(val largest_batch); GPU memory $(val gpu_mem_used_mib) MiB"
# A decoder may conceal the junk and go on giving frames: then the camera
# is not failed, and what matters is the others' row above.
row "corrupted file: the camera fails and is retried" "$([ "$(val failing_reconnects)" -ge 1 ] 2>/dev/null && echo PASS || echo "INFO (not failed)")" "reconnects=$(val failing_reconnects), running while corrupted=$(val failing_running_while_cut), frames while corrupted=$(val failing_frames_while_cut)"
row "restored file: the camera runs again" "$([ "$(val failing_running_at_end)" = 1 ] && echo PASS || echo FAIL)" "running=$(val failing_running_at_end)"
row "SIGTERM: EOS everywhere, exit 0" "$([ "$rc" = 0 ] && echo PASS || echo FAIL)" "rc=$rc"

echo "| check | result | detail |"
echo "| --- | --- | --- |"
printf '%s\n' "${rows[@]}"
