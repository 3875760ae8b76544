#!/usr/bin/env bash
# The operator's page under load on the GPU machine (staged by
# scripts/gpu-stage.sh):
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run webview [CAMERAS] [SECONDS]
# cudainfer-run with CAMERAS (default 64) file cameras of dog_1080p.mp4 looped
# in real time on the GPU path. After a warm-up, two windows of SECONDS
# (default 35) each: first nobody looks, then a client does what the page
# does for every tile at once (each camera's snapshot.jpg at 480 px 2.5 times
# a second, GET /cameras every 2.5 s). Per window: the cameras' frames out
# per second (from /metrics' counters) and their p99 latency (the service's
# window of each camera's last 1,024 frames), snapshots encoded, dropped and
# skipped frames. PASS: with the page, the mean fps and the worst and median
# camera's p99 stay within 5 % of the window without it (p99 within 5 % or
# 2 ms, whichever is larger). Prints the table; logs under $OUT. WEBVIEW_FLAGS
# replaces the GPU flags (`--decode cpu --providers cpu` tries it on a CPU).
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
cameras=${1:-64}
seconds=${2:-35}
out=${OUT:-/tmp/gpu-webview}
mkdir -p "$out"
app=${GPU_APP:-$(dirname "$0")}
port=18081
unset GST_PLUGIN_PATH
export GST_REGISTRY_1_0=$out/registry.bin
uris=()
for _ in $(seq "$cameras"); do uris+=("file://$GPU_DATA/media/dog_1080p.mp4"); done
"$app/cudainfer-run" --model "$GPU_DATA/models/yolox_nano_dynbatch.onnx" --labels "$GPU_DATA/models/coco-labels.txt" \
  ${WEBVIEW_FLAGS:---decode gpu --providers cuda} --http "127.0.0.1:$port" --no-status "${uris[@]}" 2> "$out/service.log" &
pid=$!
timeout -k 5 $((3 * seconds + 90)) python3 - "$port" "$seconds" "$out" <<'PY' > "$out/webview.md"
import json, re, sys, threading, time, urllib.request as u
port, seconds, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
base = f"http://127.0.0.1:{port}"
def get(path, timeout=10):
    with u.urlopen(base + path, timeout=timeout) as r:
        return r.read()
def ready():
    for _ in range(120):
        try:
            if json.loads(get("/readyz")).get("ready"):
                return True
        except Exception:
            pass
        time.sleep(1)
    return False
def metrics():
    m = {}
    for line in get("/metrics").decode().splitlines():
        g = re.match(r'^(\w+)(?:\{(.*)\})? ([-0-9.e+]+)$', line)
        if g:
            m[(g[1], g[2] or "")] = float(g[3])
    return m
def per_camera(m, name, extra=""):
    return {re.search(r'camera="([^"]+)"', k[1])[1]: v for k, v in m.items()
            if k[0] == name and k[1].endswith(extra) and 'camera="' in k[1]}
def window(poll):
    stop = threading.Event()
    errors, fetched = [0], [0]
    ids = [c["id"] for c in json.loads(get("/cameras"))] if poll else []
    def tile(cid):
        while not stop.is_set():
            t = time.monotonic()
            try:
                get(f"/cameras/{cid}/snapshot.jpg?width=480")
                fetched[0] += 1
            except Exception:
                errors[0] += 1
            stop.wait(max(0.0, 0.4 - (time.monotonic() - t)))
    def listing():
        while not stop.is_set():
            try:
                get("/cameras")
            except Exception:
                errors[0] += 1
            stop.wait(2.5)
    threads = [threading.Thread(target=tile, args=(c,)) for c in ids]
    if poll:
        threads.append(threading.Thread(target=listing))
    for t in threads:
        t.start()
    time.sleep(3)  # the polling at its pace before the window opens
    a, t0 = metrics(), time.monotonic()
    time.sleep(seconds)
    b, t1 = metrics(), time.monotonic()
    stop.set()
    for t in threads:
        t.join()
    fa, fb = per_camera(a, "cudainfer_camera_frames_out_total"), per_camera(b, "cudainfer_camera_frames_out_total")
    fps = sorted((fb[c] - fa.get(c, 0)) / (t1 - t0) for c in fb)
    p99 = sorted(v * 1e3 for v in per_camera(b, "cudainfer_camera_latency_seconds", 'quantile="0.99"').values())
    total = lambda m, n: sum(per_camera(m, n).values())
    return {
        "fps_mean": sum(fps) / len(fps), "fps_min": fps[0], "p99_worst_ms": p99[-1],
        "p99_median_ms": p99[len(p99) // 2],
        "snapshots": b.get(("cudainfer_snapshots_encoded_total", ""), 0) - a.get(("cudainfer_snapshots_encoded_total", ""), 0),
        "fetched": fetched[0], "errors": errors[0],
        "dropped": total(b, "cudainfer_camera_dropped_total") - total(a, "cudainfer_camera_dropped_total"),
        "skipped": total(b, "cudainfer_camera_skipped_total") - total(a, "cudainfer_camera_skipped_total"),
        "cameras": len(fps),
    }
if not ready():
    print("the service never became ready"); sys.exit(1)
time.sleep(10)
rows = [("without the page", window(False)), ("with the page polling every tile", window(True))]
print(f"| window ({seconds:.0f} s) | cameras | fps mean | fps min | p99 worst camera ms | p99 median camera ms | snapshots encoded | fetched / errors | dropped | skipped |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, r in rows:
    print(f"| {name} | {r['cameras']} | {r['fps_mean']:.2f} | {r['fps_min']:.2f} | {r['p99_worst_ms']:.1f} | {r['p99_median_ms']:.1f} | {r['snapshots']:.0f} | {r['fetched']} / {r['errors']} | {r['dropped']:.0f} | {r['skipped']:.0f} |")
(_, a), (_, b) = rows
within = lambda before, after: after <= max(1.05 * before, before + 2.0)
ok = (b["fps_mean"] >= 0.95 * a["fps_mean"] and within(a["p99_worst_ms"], b["p99_worst_ms"])
      and within(a["p99_median_ms"], b["p99_median_ms"]) and b["snapshots"] > 0 and b["errors"] == 0)
print(f"WEBVIEW cameras={a['cameras']} fps={a['fps_mean']:.2f}/{b['fps_mean']:.2f} p99_worst_ms={a['p99_worst_ms']:.1f}/{b['p99_worst_ms']:.1f} "
      f"p99_median_ms={a['p99_median_ms']:.1f}/{b['p99_median_ms']:.1f} snapshots={b['snapshots']:.0f} pass={str(ok).lower()}")
PY
rc=$?
kill -TERM "$pid" 2> /dev/null
wait "$pid"
src=$?
line=$(grep -o '^WEBVIEW .*' "$out/webview.md")
verdict "$cameras cameras with the page polling every tile: fps and p99 within 5 %" \
  "$(echo "$line" | grep -q 'pass=true' && echo PASS || echo FAIL)" "${line:-no result (rc=$rc), see webview.md and service.log}"
verdict "SIGTERM ends the service" "$(pass_fail $src)" "exit $src"
echo "## The operator's page under load ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
cat "$out/webview.md"
echo
echo "| check | verdict | detail |"
echo "|---|---|---|"
printf '%s\n' "${verdicts[@]}"
