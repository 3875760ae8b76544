#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs the Debian package into a fresh Debian 12 (bookworm) minbase chroot
# and checks it there:
#   - apt-get install ./cudainfer_*.deb pulls its Depends (no Recommends, so
#     the Depends alone must suffice; gstreamer1.0-tools is added for the check)
#   - gst-inspect-1.0 trtinfer finds the installed plugin (a registry in /tmp)
#   - cudainfer-run --help runs
#   - fetch-onnxruntime.sh cpu puts ONNX Runtime at /opt/onnxruntime, and one
#     JPEG goes through decode, cudapreprocess, trtinfer and inferpublish: the
#     dog is found (skipped without the test data)
#   - cudainfer-run --once on the same image finds it too (its own copy of
#     the elements beside the installed plugin)
#   - systemd-analyze verify accepts the unit against the installed tree, and
#     systemd-analyze security --offline scores it (informational)
#   - the unit under systemd: the chroot booted as a privileged container
#     (podman --rootfs, systemd as PID 1) starts the service as its dynamic
#     user with its hardening, the dog shows up in /var/lib/cudainfer, and
#     systemctl stop (SIGTERM) ends it with status 0 (skipped without podman)
#   - the package removes and purges cleanly
#
#   deploy/tests/deb-install.sh [DEB]     without DEB, builds it (deploy/debian/build-deb.sh)
#
# The chroot comes from the cached bookworm tar of deploy/lib.sh (debootstrap
# on first use; mirror: the host's apt sources, or $DEBIAN_MIRROR) and is
# thrown away afterwards. Needs root: sudo is used when not root; without
# either the test is skipped (exit 0). Test data: $CUDAINFER_SHARED_DIR,
# <checkout>/../shared or /work/shared (models/, media/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LIB_TAG="deb-install"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
top=$LIB_TOP

if ! have_root; then
  log "SKIPPED: needs root (or sudo without a password) for debootstrap and chroot"
  exit 0
fi

need_tools debootstrap debootstrap systemd-analyze systemd
python3 -m pip --version >/dev/null 2>&1 || need_tools pip3 python3-pip

root=""
failed=()
finish() {
  local rc=$?
  lib_cleanup
  [ -z "$root" ] || safe_rm "$root"
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

# check NAME CMD...: runs a check, records a failure without stopping.
check() {
  local name=$1
  shift
  log "--- $name"
  if timed "check: $name" "$@"; then
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

deb=${1:-}
build_deb() { deb=$("$top/deploy/debian/build-deb.sh" "$top/build/deb"); }
if [ -z "$deb" ]; then
  timed "build the .deb (build-deb.sh)" build_deb
fi
[ -f "$deb" ] || die "no package at $deb"
deb=$(realpath "$deb")
log "package: $deb"

timed "bookworm root file system (cached tar)" bookworm_rootfs_tar
root=$(mktemp -d "${TMPDIR:-/tmp}/cudainfer-deb-install.XXXXXX")
timed "unpack the root file system" extract_rootfs "$ROOTFS_TAR" "$root"
lib_chroot_mount "$root"
lib_apt_cache_mount "$root"
$SUDO cp "$deb" "$root/tmp/"

install_deb() {
  in_chroot "$root" apt-get update -qq
  in_chroot "$root" apt-get install -y -qq --no-install-recommends \
    "/tmp/$(basename "$deb")" gstreamer1.0-tools >"$root/tmp/apt.log" 2>&1 || {
    tail -n 30 "$root/tmp/apt.log" >&2
    return 1
  }
  # Packages no longer in the archive leave the cache.
  in_chroot "$root" apt-get autoclean -qq >/dev/null
  # shellcheck disable=SC2016 # dpkg-query's own ${Field} format
  in_chroot "$root" dpkg-query -W -f='${Package} ${Version} ${Status}\n' cudainfer >&2
  # shellcheck disable=SC2016
  log "$(in_chroot "$root" dpkg-query -W -f='${Package}\n' | wc -l) packages installed in the chroot," \
    "$($SUDO du -sh --one-file-system "$root" | cut -f1)"
}
timed "apt-get install ./cudainfer_*.deb (+ Depends)" install_deb

# The environment of the checks: clean, with a plugin registry in /tmp.
inside() {
  $SUDO chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp \
    LANG=C.UTF-8 GST_REGISTRY_1_0=/tmp/gst-registry.bin "$@"
}

inspect() {
  local out
  out=$(inside gst-inspect-1.0 trtinfer 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
  grep -E '^  (Filename|Version)' <<<"$(inside gst-inspect-1.0 cudainfer 2>&1)" >&2
  grep -q 'Long-name' <<<"$out"
}
check "gst-inspect-1.0 trtinfer" inspect

run_help() {
  local out
  out=$(inside cudainfer-run --help 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
  sed -n 1,2p <<<"$out" >&2
  grep -q -- '--config FILE' <<<"$out"
}
check "cudainfer-run --help" run_help

conffile() {
  # shellcheck disable=SC2016 # dpkg-query's own ${Field} format
  in_chroot "$root" dpkg-query -W -f='${Conffiles}\n' cudainfer | grep -q /etc/cudainfer/config.toml &&
    $SUDO test -s "$root/etc/cudainfer/token" &&
    [ "$($SUDO stat -c %a "$root/etc/cudainfer/token")" = 600 ]
}
check "conffile registered, token made (mode 600)" conffile

if [ -n "$shared" ]; then
  fetch_ort() {
    # The installed copy of the script, run on the host (the chroot has no pip).
    $SUDO env WHEEL_CACHE="$LIB_CACHE/wheels" \
      "$root/usr/share/cudainfer/fetch-onnxruntime.sh" cpu "$root/opt/onnxruntime" 2>&1 | sed 's/^/  /' >&2
    [ -f "$root/opt/onnxruntime/lib/libonnxruntime.so" ]
  }
  check "fetch-onnxruntime.sh cpu into the chroot" fetch_ort

  $SUDO mkdir -p "$root/tmp/data"
  $SUDO cp "$shared/models/yolox_nano.onnx" "$shared/models/coco-labels.txt" "$shared/media/dog.jpg" "$root/tmp/data/"

  pipeline() {
    local out
    # No ORT_DYLIB_PATH: the plugin must find /opt/onnxruntime by itself.
    out=$(inside gst-launch-1.0 -q filesrc location=/tmp/data/dog.jpg ! jpegdec ! videoconvert \
      ! cudapreprocess ! trtinfer model=/tmp/data/yolox_nano.onnx labels=/tmp/data/coco-labels.txt \
      ! inferpublish ! fakesink 2>&1) || {
      printf '%s\n' "$out" >&2
      return 1
    }
    printf '  %s\n' "$(cut -c1-200 <<<"$out" | head -n 3)" >&2
    grep -q '"label":"dog"' <<<"$out"
  }
  check "one-frame CPU inference (gst-launch-1.0)" pipeline

  service_once() {
    local out
    out=$(inside cudainfer-run --model /tmp/data/yolox_nano.onnx --labels /tmp/data/coco-labels.txt \
      --once --no-sync --json - file:///tmp/data/dog.jpg 2>"$root/tmp/service.log") || {
      cat "$root/tmp/service.log" >&2
      return 1
    }
    printf '  %s\n' "$(cut -c1-200 <<<"$out" | head -n 3)" >&2
    grep -q '"label":"dog"' <<<"$out"
  }
  check "cudainfer-run --once on one image" service_once
else
  log "no test data (models/yolox_nano.onnx, media/dog.jpg): inference checks skipped"
fi

verify_unit() {
  local out rc=0
  # --root: the unit and its ExecStart binary are looked up in the chroot.
  # Any output fails too: unknown keys and bad values are only warnings.
  out=$(systemd-analyze verify --root="$root" /lib/systemd/system/cudainfer-run.service 2>&1) || rc=$?
  [ -z "$out" ] || printf '  %s\n' "$out" >&2
  [ $rc -eq 0 ] && [ -z "$out" ] || return 1
  # Informational: the exposure score of the hardening settings.
  systemd-analyze security --offline=yes --root="$root" cudainfer-run.service 2>&1 | tail -n 1 | sed 's/^/  /' >&2 || true
}
check "systemd-analyze verify (unit in the installed tree)" verify_unit

# The unit under a real systemd: the chroot booted as a container (systemd as
# PID 1, privileged so that it may set up the unit's namespaces). It must
# start as its dynamic user with all its hardening, write results to its
# state directory, and stop on SIGTERM with exit status 0.
unit_under_systemd() {
  local name=cudainfer-deb-install-$$ dir=/usr/local/share/cudainfer state t0 rc=0
  $SUDO mkdir -p "$root$dir"
  $SUDO cp "$shared/models/yolox_nano.onnx" "$shared/models/coco-labels.txt" "$shared/media/dog.jpg" "$root$dir/"
  printf '%s\n' "model = \"$dir/yolox_nano.onnx\"" "labels = \"$dir/coco-labels.txt\"" \
    'json = "results.jsonl"' "cameras = [{ uri = \"file://$dir/dog.jpg\", id = \"dog\" }]" |
    $SUDO tee "$root/etc/cudainfer/config.toml" >/dev/null
  lib_chroot_umount
  podman_run_setup --rootfs "$root"
  "${PODMAN[@]}" run -d --name "$name" --privileged --systemd=always "${PODMAN_RUN_ARGS[@]}" \
    --rootfs "$root" /lib/systemd/systemd >/dev/null || return 1
  sys() { "${PODMAN[@]}" exec "$name" "$@"; }
  for _ in $(seq 1 60); do
    state=$(sys systemctl is-system-running 2>/dev/null || true)
    case $state in running | degraded) break ;; esac
    sleep 0.5
  done
  log "  systemd in the chroot: $state"
  sys systemctl start cudainfer-run || rc=1
  sleep 3
  if ! sys systemctl is-active -q cudainfer-run &&
    sys journalctl -u cudainfer-run --no-pager | grep -q 'cannot read the token file'; then
    # Seen where systemd itself runs in a container (as here): the
    # credential is passed but unreadable, even for User=nobody. The token
    # then comes from an EnvironmentFile, read by systemd as root.
    log "  LoadCredential's file is unreadable under this nested systemd; retrying with a drop-in:" \
      "EnvironmentFile=/etc/cudainfer/token.env instead (README.Debian)"
    # shellcheck disable=SC2016 # expanded by the shell inside
    sys sh -c 'umask 077; printf "CUDAINFER_RUN_TOKEN=%s\n" "$(cat /etc/cudainfer/token)" >/etc/cudainfer/token.env
      mkdir -p /etc/systemd/system/cudainfer-run.service.d
      printf "[Service]\nLoadCredential=\nExecStart=\nExecStart=/usr/bin/cudainfer-run --config /etc/cudainfer/config.toml\nEnvironmentFile=/etc/cudainfer/token.env\n" \
        >/etc/systemd/system/cudainfer-run.service.d/token-env.conf
      systemctl daemon-reload; systemctl reset-failed cudainfer-run; systemctl restart cudainfer-run'
  fi
  for _ in $(seq 1 60); do
    sys grep -q '"label":"dog"' /var/lib/cudainfer/results.jsonl 2>/dev/null && break
    sleep 0.5
  done
  log "  $(sys systemctl show cudainfer-run -p ActiveState -p DynamicUser -p MainPID | tr '\n' ' ')"
  sys ls -l /var/lib/ /var/lib/cudainfer/ 2>&1 | grep -E 'cudainfer|results' | sed 's/^/  /' >&2
  sys grep -q '"label":"dog"' /var/lib/cudainfer/results.jsonl || rc=1
  t0=$(date +%s.%N)
  sys systemctl stop cudainfer-run || rc=1
  log "  systemctl stop: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s," \
    "exit status $(sys systemctl show cudainfer-run -p ExecMainStatus --value)," \
    "result $(sys systemctl show cudainfer-run -p Result --value)"
  [ "$(sys systemctl show cudainfer-run -p ExecMainStatus --value)" = 0 ] || rc=1
  [ $rc -eq 0 ] || sys journalctl -u cudainfer-run --no-pager -n 20 >&2 || true
  "${PODMAN[@]}" rm -f -t 1 "$name" >/dev/null 2>&1 || true
  $SUDO rm -rf "$root/etc/systemd/system/cudainfer-run.service.d"
  lib_chroot_mount "$root"
  return $rc
}
if [ -n "$shared" ] && command -v podman >/dev/null; then
  check "the unit under systemd (DynamicUser, hardening, SIGTERM)" unit_under_systemd
else
  log "no podman or no test data: the unit is not started under systemd"
fi

remove_purge() {
  in_chroot "$root" apt-get remove -y -qq cudainfer >/dev/null &&
    $SUDO test -f "$root/etc/cudainfer/config.toml" &&
    ! $SUDO test -e "$root/usr/bin/cudainfer-run" &&
    in_chroot "$root" apt-get purge -y -qq cudainfer >/dev/null &&
    ! $SUDO test -e "$root/etc/cudainfer"
}
check "apt-get remove keeps the conffile, purge removes /etc/cudainfer" remove_purge
