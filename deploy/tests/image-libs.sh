#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Checks the shared libraries of the cudainfer-run images (built by
# deploy/container/build-images.sh), and runs them:
#
#   - lists every shared library in the image (a report file)
#   - every library that these need resolves inside the image, but those the
#     NVIDIA container toolkit mounts from the host's driver (libcuda.so.1,
#     libnvcuvid.so.1, libnvidia-encode.so.1, libnvidia-ml.so.1, other
#     libnvidia-*): the plugin, cudainfer-run, ONNX Runtime (and in the gpu
#     image its CUDA and shared providers and every library of
#     /opt/nvidia/lib), GStreamer's nvcodec plugin; their undefined symbols
#     (ldd -r) are only the driver's (cu*) and ONNX Runtime's provider bridge
#   - the names opened with dlopen resolve through the image's linker cache:
#     NVRTC (libnvrtc.so, as cudarc and nvcodec ask, libnvrtc.so.13 and its
#     builtins), cuDNN 9, cuFFT 12, nvJitLink; in the cpu image: none of them,
#     the CPU path needs none
#   - no GStreamer plugin and nothing in /opt misses a library (the service
#     may load them); other libraries that miss one are listed (optional
#     parts of Debian packages the service never loads, e.g. libcaca's GL
#     driver)
#   - in a container: cudainfer-run --help, gst-inspect-1.0 trtinfer, and one
#     JPEG through gst-launch-1.0 (decode, cudapreprocess, trtinfer on the CPU,
#     inferpublish) and through cudainfer-run --once: the dog must be found
#     (skipped without the test data; also on the gpu image, whose ONNX Runtime
#     must work without a GPU)
#   - the service with its API bound beyond loopback and a token in the
#     environment: /healthz and /readyz answer without the token, /metrics
#     only with it; podman stop (SIGTERM) ends it with exit status 0
#
#   deploy/tests/image-libs.sh [cpu|gpu|all|IMAGE|ROOTFS-DIR]     default: all
#
# A ROOTFS-DIR gets the library checks only. The library lists go to
# $IMAGE_LIBS_REPORT_DIR (default <checkout>/build/image-libs). Needs root
# (or sudo) for podman image mount; container runs take PODMAN_FLAGS and
# PODMAN_RUN_FLAGS (deploy/lib.sh). Test data: $CUDAINFER_SHARED_DIR, <checkout>/../shared or
# /work/shared.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LIB_TAG="image-libs"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
top=$LIB_TOP
repo=localhost/cudainfer-run
reports=${IMAGE_LIBS_REPORT_DIR:-$top/build/image-libs}

have_root || die "needs root (or sudo without a password) for podman image mount"
need_tools podman podman curl curl

targets=()
case ${1:-all} in
  all) targets=("$repo:cpu" "$repo:gpu") ;;
  cpu | gpu) targets=("$repo:$1") ;;
  -h | --help)
    awk 'NR > 2 && /^#/ { sub(/^# ?/, ""); print; next } NR > 2 { exit }' "$0"
    exit 0
    ;;
  *) targets=("$1") ;;
esac

# The host driver's libraries: mounted by the NVIDIA container toolkit.
host_libs='^(libcuda\.so(\.1)?|libnvcuvid\.so\.1|libnvidia-[a-z0-9-]+\.so(\.[0-9]+)*)$'

mounted_images=()
failed=()
finish() {
  local rc=$? i
  lib_cleanup
  for i in "${mounted_images[@]}"; do
    $SUDO podman image umount "$i" >/dev/null 2>&1 || true
  done
  print_times
  if [ $rc -ne 0 ] || [ ${#failed[@]} -gt 0 ]; then
    log "FAILED${failed[*]:+: ${failed[*]}}"
    [ $rc -ne 0 ] || rc=1
  else
    log "all checks passed"
  fi
  exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

check() {
  local name=$1
  shift
  log "--- $name"
  if timed "$name" "$@"; then
    log "ok: $name"
  else
    log "FAILED: $name"
    failed+=("$name")
  fi
}

shared=""
for d in "${CUDAINFER_SHARED_DIR:-}" "$top/../shared" /work/shared; do
  if [ -n "$d" ] && [ -f "$d/models/yolox_nano.onnx" ] && [ -f "$d/media/dog.jpg" ]; then
    shared=$(realpath "$d")
    break
  fi
done

# ldd_in ROOT FILE...: "FILE<TAB>missing library" for each library a file
# needs that does not resolve inside ROOT.
ldd_in() {
  local root=$1
  shift
  # shellcheck disable=SC2016 # expanded by the shell inside the image
  $SUDO chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c '
    for f in "$@"; do
      ldd "$f" 2>/dev/null | sed -n "s|^[[:space:]]*\([^ ]*\) => not found.*|$f	\1|p"
    done' sh "$@"
}

# The libraries of the service's own stack and what they load.
key_files() {
  local root=$1
  echo /usr/bin/cudainfer-run
  echo /usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstcudainfer.so
  echo /usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstnvcodec.so
  (cd "$root" && find opt/onnxruntime/lib -name 'lib*.so*' -type f -printf '/%p\n')
  [ ! -d "$root/opt/nvidia/lib" ] || (cd "$root" && find opt/nvidia/lib -type f -name 'lib*.so*' -printf '/%p\n')
}

check_key_libs() {
  local root=$1 files missing bad
  mapfile -t files < <(key_files "$root" | sort)
  printf '  %s\n' "${files[@]}" >&2
  missing=$(ldd_in "$root" "${files[@]}")
  bad=$(awk -F'\t' -v re="$host_libs" '$2 !~ re' <<<"$missing")
  if [ -n "$missing" ]; then
    log "not in the image (from the host's driver, through the NVIDIA container toolkit):"
    awk -F'\t' -v re="$host_libs" '$2 ~ re { print "  " $1 ": " $2 }' <<<"$missing" >&2
  fi
  if [ -n "$bad" ]; then
    log "MISSING from the image:"
    sed 's/\t/: /; s/^/  /' <<<"$bad" >&2
    return 1
  fi
}

# ldd -r: symbols left undefined once everything resolvable is loaded.
check_symbols() {
  local root=$1 files out bad
  mapfile -t files < <(key_files "$root")
  # shellcheck disable=SC2016 # expanded by the shell inside the image
  out=$($SUDO chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /bin/sh -c '
    for f in "$@"; do ldd -r "$f" 2>&1 | sed -n "s|^undefined symbol: \([^[:space:]]*\).*|$f	\1|p"; done' sh "${files[@]}")
  # The driver API (libcuda) and the provider bridge that libonnxruntime.so
  # hands to its providers when it loads them.
  bad=$(awk -F'\t' '$2 !~ /^cu[A-Z]/ && $2 != "Provider_GetHost"' <<<"$out" | grep -v '^$' || true)
  log "$(grep -c . <<<"$out" || true) undefined symbols, all from libcuda.so.1 or the ORT provider bridge:" \
    "$(awk -F'\t' '$2 ~ /^cu[A-Z]/ { n++ } END { print n + 0 }' <<<"$out") cu*," \
    "$(grep -c 'Provider_GetHost' <<<"$out" || true) Provider_GetHost"
  if [ -n "$bad" ]; then
    log "other undefined symbols:"
    sed 's/\t/: /; s/^/  /' <<<"$bad" | head -n 40 >&2
    return 1
  fi
}

# Names opened with dlopen (no path), looked up as the loader would: the cache.
check_dlopen_names() {
  local root=$1 gpu=$2 cache name ok=0
  cache=$($SUDO chroot "$root" /sbin/ldconfig -p)
  if [ "$gpu" = yes ]; then
    for name in libnvrtc.so libnvrtc.so.13 libnvrtc-builtins.so.13.0 libcudnn.so.9 \
      libcudnn_graph.so.9 libcudnn_engines_precompiled.so.9 libcufft.so.12 libnvJitLink.so.13 \
      libcublasLt.so.13 libcudart.so.13 libcurand.so.10; do
      if grep -q "^[[:space:]]$name (" <<<"$cache"; then
        printf '  %-36s => %s\n' "$name" "$(grep -m1 "^[[:space:]]$name (" <<<"$cache" | sed 's/.*=> //')" >&2
      else
        log "  $name does not resolve"
        ok=1
      fi
    done
  else
    if grep -q 'libnvrtc' <<<"$cache"; then
      log "  unexpected NVRTC in the cpu image"
      ok=1
    fi
    log "  cpu image: no NVRTC or CUDA library (the CPU path loads none)"
  fi
  return $ok
}

# Every other shared library. A GStreamer plugin or a library in /opt that
# misses one fails the check: the service may load it. Elsewhere it is listed
# only: optional parts of Debian packages (plugins of other programs) that
# the service never loads.
check_all_libs() {
  local root=$1 report=$2 files missing bad
  mapfile -t files < <(cd "$root" && find usr/lib usr/libexec opt -xdev \
    -name '*.so' -o -name '*.so.[0-9]*' | grep -v '\.py$' | sed 's|^|/|' | sort)
  (cd "$root" && for f in "${files[@]}"; do
    if [ -L ".$f" ]; then
      printf '%s -> %s\n' "$f" "$(readlink ".$f")"
    else
      printf '%s %s\n' "$f" "$(stat -c %s ".$f")"
    fi
  done) >"$report"
  log "  $(grep -vc -- ' -> ' "$report") shared library files, $(grep -c -- ' -> ' "$report") links," \
    "$(awk '!/ -> / { s += $2 } END { printf "%.0f MB", s / 1e6 }' "$report"); list: $report"
  mapfile -t files < <(grep -v -- ' -> ' "$report" | cut -d' ' -f1)
  missing=$(ldd_in "$root" "${files[@]}")
  log "  $(awk -F'\t' -v re="$host_libs" '$2 ~ re' <<<"$missing" | cut -f1 | sort -u | grep -c . || true)" \
    "of them need a host driver library"
  missing=$(awk -F'\t' -v re="$host_libs" '$2 !~ re' <<<"$missing" | grep -v '^$' || true)
  bad=$(grep -E '^(/usr/lib/x86_64-linux-gnu/gstreamer-1.0/|/opt/)' <<<"$missing" || true)
  if [ -n "$missing" ] && [ "$missing" != "$bad" ]; then
    log "  unresolved, in libraries the service does not load (not an error):"
    grep -vE '^(/usr/lib/x86_64-linux-gnu/gstreamer-1.0/|/opt/)' <<<"$missing" |
      sed 's/\t/: /; s/^/    /' | head -n 40 >&2
  fi
  if [ -n "$bad" ]; then
    log "  unresolved, in GStreamer plugins or /opt:"
    sed 's/\t/: /; s/^/    /' <<<"$bad" | head -n 40 >&2
    return 1
  fi
}

# --- runs in a container ----------------------------------------------------

run_help() {
  local out
  out=$("${PODMAN[@]}" run --rm "${PODMAN_RUN_ARGS[@]}" "$image" --help 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
  sed -n 1,2p <<<"$out" | sed 's/^/  /' >&2
  grep -q -- '--config FILE' <<<"$out"
}

run_inspect() {
  local out
  out=$("${PODMAN[@]}" run --rm "${PODMAN_RUN_ARGS[@]}" --entrypoint gst-inspect-1.0 "$image" trtinfer 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
  grep -E '^  (Long-name|Version)' <<<"$out" | sed 's/^/  /' >&2 || true
  grep -q 'Long-name' <<<"$out"
}

data_mounts() {
  echo -v "$shared/models/yolox_nano.onnx:/models/yolox_nano.onnx:ro" \
    -v "$shared/models/coco-labels.txt:/models/coco-labels.txt:ro" \
    -v "$shared/media/dog.jpg:/data/dog.jpg:ro"
}

run_pipeline() {
  local out mounts
  read -r -a mounts <<<"$(data_mounts)"
  out=$("${PODMAN[@]}" run --rm "${PODMAN_RUN_ARGS[@]}" "${mounts[@]}" --entrypoint gst-launch-1.0 "$image" -q \
    filesrc location=/data/dog.jpg ! jpegdec ! videoconvert ! cudapreprocess \
    ! trtinfer model=/models/yolox_nano.onnx labels=/models/coco-labels.txt \
    ! inferpublish ! fakesink 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
  printf '  %s\n' "$(grep -m1 '^{' <<<"$out" | cut -c1-160)..." >&2
  grep -o '"label":"[a-z ]*","class_id":[0-9]*,"confidence":[0-9.]*' <<<"$out" | sed 's/^/    /' >&2
  grep -q '"label":"dog"' <<<"$out"
}

run_service() {
  local out mounts
  read -r -a mounts <<<"$(data_mounts)"
  out=$("${PODMAN[@]}" run --rm "${PODMAN_RUN_ARGS[@]}" "${mounts[@]}" "$image" --model /models/yolox_nano.onnx \
    --labels /models/coco-labels.txt --once --no-sync --json - file:///data/dog.jpg 2>"$work/service.log") || {
    cat "$work/service.log" >&2
    return 1
  }
  grep -E 'event=service_starting' "$work/service.log" | cut -c1-200 | sed 's/^/  /' >&2 || true
  grep -q '"label":"dog"' <<<"$out"
}

# The service as deployed: API beyond loopback with a token from the
# environment, /healthz and /readyz without it, /metrics with it, then
# podman stop (SIGTERM): exit status 0 well within the 30 s grace period.
run_service_http() {
  local mounts port name net=() token code t0 rc=0
  read -r -a mounts <<<"$(data_mounts)"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  name=cudainfer-image-libs-$$
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # With the host's network the port is the host's; else it is published.
  [[ " ${PODMAN_RUN_ARGS[*]} " == *" --network=host "* ]] || net=(-p "127.0.0.1:$port:$port")
  "${PODMAN[@]}" run -d "${PODMAN_RUN_ARGS[@]}" --name "$name" "${net[@]}" "${mounts[@]}" -e CUDAINFER_RUN_TOKEN="$token" \
    "$image" --model /models/yolox_nano.onnx --labels /models/coco-labels.txt --json /dev/null \
    --http "0.0.0.0:$port" file:///data/dog.jpg >/dev/null
  for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  for path in healthz readyz; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$path")
    log "  GET /$path without the token: $code"
    [ "$code" = 200 ] || rc=1
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")
  log "  GET /metrics without the token: $code"
  [ "$code" = 401 ] || rc=1
  code=$(curl -s -o "$work/metrics.txt" -w '%{http_code}' -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port/metrics")
  log "  GET /metrics with the token: $code, $(grep -m1 '^cudainfer_camera_frames_in_total' "$work/metrics.txt" || echo 'no frames counter')"
  [ "$code" = 200 ] || rc=1
  t0=$(date +%s.%N)
  "${PODMAN[@]}" stop -t 30 "$name" >/dev/null
  code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$name")
  log "  podman stop (SIGTERM): exit status $code after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
  [ "$code" = 0 ] || {
    "${PODMAN[@]}" logs "$name" 2>&1 | tail -n 20 >&2
    rc=1
  }
  "${PODMAN[@]}" rm -f "$name" >/dev/null 2>&1 || true
  return $rc
}

# --- main ---------------------------------------------------------------------

work=$(mktemp -d)
mkdir -p "$reports"
sizes=()
for target in "${targets[@]}"; do
  image=""
  if [ -d "$target" ]; then
    root=$(realpath "$target")
    name=$(basename "$root")
  else
    image=$target
    $SUDO podman image exists "$image" ||
      die "no image $image: build it with deploy/container/build-images.sh"
    root=$($SUDO podman image mount "$image")
    mounted_images+=("$image")
    name=${image##*/}
    name=${name//:/-}
    size=$($SUDO podman image inspect --format '{{.Size}}' "$image")
    sizes+=("$(printf '%-30s %6d MB (%s bytes)' "$image" $((size / 1000000)) "$size")")
  fi
  gpu=no
  [ ! -e "$root/opt/onnxruntime/lib/libonnxruntime_providers_cuda.so" ] || gpu=yes
  log "=== $target (gpu libraries: $gpu) at $root"
  check "$name: the stack's libraries resolve" check_key_libs "$root"
  check "$name: no undefined symbols (ldd -r)" check_symbols "$root"
  check "$name: dlopen names in the linker cache" check_dlopen_names "$root" "$gpu"
  check "$name: every shared library resolves" check_all_libs "$root" "$reports/$name-libs.txt"
  if [ -n "$image" ]; then
    podman_run_setup "$image"
    check "$name: cudainfer-run --help" run_help
    check "$name: gst-inspect-1.0 trtinfer" run_inspect
    if [ -n "$shared" ]; then
      check "$name: one JPEG, CPU inference (gst-launch-1.0)" run_pipeline
      check "$name: one JPEG, cudainfer-run --once" run_service
      check "$name: service with API and token, stopped by SIGTERM" run_service_http
    else
      log "no test data: inference runs skipped"
    fi
  fi
done
rm -rf "$work"
if [ ${#sizes[@]} -gt 0 ]; then
  log "image sizes:"
  printf '  %s\n' "${sizes[@]}" >&2
fi
