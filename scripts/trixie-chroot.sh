#!/usr/bin/env bash
# The test suite against GStreamer 1.26: a Debian 13 (trixie) chroot, made
# once with debootstrap and cached, in which the tests built here on Debian 12
# run unchanged (they link GStreamer dynamically, so they get trixie's 1.26).
#
#   scripts/trixie-chroot.sh [test]        make the chroot if needed, build the
#                                          tests (cargo, release) and run them all
#                                          inside: the Rust test binaries, the
#                                          Python tests, the ABI check of
#                                          meta/analytics/ffi.rs, the gst-inspect check
#   scripts/trixie-chroot.sh create        only make (or remake) the chroot
#   scripts/trixie-chroot.sh run CMD...    run CMD inside, with the same mounts and
#                                          environment as the tests (e.g. run bash)
#   scripts/trixie-chroot.sh path          print the chroot's folder
#
# The chroot lives in $CUDAINFER_TRIXIE_DIR, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/cudainfer/trixie (about 1.3 GB). It is
# stamped with the package list below; a changed list makes it anew.
# Mirror: $DEBIAN_MIRROR (default http://deb.debian.org/debian). Cargo's
# output goes to $CARGO_TARGET_DIR (default <checkout>/target). Needs
# debootstrap (installed if missing) and root: sudo is used when not root.
#
# While it runs, the checkout, the test data folder and the ONNX Runtime
# library are bind-mounted at their own absolute paths inside (the test
# binaries embed the checkout's path), with /proc, /sys, /dev and a tmpfs
# /tmp; everything is unmounted on exit, failure included.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

# What the tests need at run time in trixie. gcc/libc6-dev: tests/trtinfer_ort_library.rs
# builds a stand-in library with cc. gir1.2-gst-plugins-bad-1.0: GstAnalytics
# for tests/python/test_analytics_meta.py. gstreamer1.0-rtsp: the RTSP server
# library of cudainfer-run's tests. pkgconf and libgstreamer-plugins-bad1.0-dev:
# GstAnalytics' headers for tests/abi/check_abi.py.
packages=(
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-libav
  python3 python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  gir1.2-gst-plugins-bad-1.0
  gcc libc6-dev
  gstreamer1.0-rtsp
  pkgconf libgstreamer-plugins-bad1.0-dev
)
# Elements the tests use; the chroot is refused if one is missing.
elements=(
  filesrc qtdemux h264parse avdec_h264 jpegdec decodebin videoconvert videoscale
  videotestsrc appsrc appsink identity tee queue fakesink capsfilter
  objectdetectionoverlay
)
# Bump when the way the chroot is made changes.
recipe=1

root=${CUDAINFER_TRIXIE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cudainfer/trixie}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
stamp_text="recipe=$recipe suite=trixie packages=${packages[*]}"

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

log() { printf '[trixie-chroot] %s\n' "$*" >&2; }
die() { printf '[trixie-chroot] error: %s\n' "$*" >&2; exit 1; }

# Fails if anything is mounted under $1 (so it is never removed with mounts in it).
no_mounts_under() {
  local dir
  dir=$(realpath -m "$1")
  if findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1 { f = 1 } END { exit !f }'; then
    die "something is still mounted under $dir (see findmnt); unmount it first"
  fi
}

# Checks that the chroot at $1 works: configured packages, GStreamer, the
# elements, PyGObject, cc.
check_chroot() {
  local dir=$1 audit
  audit=$($sudo chroot "$dir" dpkg --audit 2>&1) || true
  [ -z "$audit" ] || die "packages in $dir are not fully installed:
$audit"
  $sudo chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp \
    GST_REGISTRY_1_0=/tmp/check-registry.bin /bin/sh -euc '
    gst-launch-1.0 --version | sed -n 1p
    for e in "$@"; do gst-inspect-1.0 --exists "$e" || { echo "element $e is missing" >&2; exit 1; }; done
    python3 -c "import gi; gi.require_version(\"Gst\", \"1.0\"); gi.require_version(\"GstVideo\", \"1.0\"); gi.require_version(\"GstAnalytics\", \"1.0\"); from gi.repository import Gst, GstVideo, GstAnalytics; Gst.init(None); print(\"PyGObject\", gi.__version__, \"GStreamer\", Gst.version_string())"
    cc --version | sed -n 1p
    rm -f /tmp/check-registry.bin
  ' check "${elements[@]}" || die "the chroot in $dir is not usable (see above)"
}

# Installs into the chroot the packages the list gained since it was made,
# when that is all that changed (same recipe, no package dropped): minutes
# less than making it anew. False when it must be made anew.
add_new_packages() {
  local old missing=() p
  [ -f "$root/.cudainfer-stamp" ] || return 1
  old=$(cat "$root/.cudainfer-stamp")
  case $old in "recipe=$recipe suite=trixie packages="*) ;; *) return 1 ;; esac
  for p in ${old#*packages=}; do
    [[ " ${packages[*]} " == *" $p "* ]] || return 1
  done
  for p in "${packages[@]}"; do
    [[ " ${old#*packages=} " == *" $p "* ]] || missing+=("$p")
  done
  log "adding ${missing[*]} to $root"
  no_mounts_under "$root"
  mount_in proc /proc -t proc proc
  $sudo chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 /bin/sh -euc '
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@"
    apt-get clean
    rm -rf /var/lib/apt/lists/*
  ' install "${missing[@]}" || { cleanup; return 1; }
  cleanup
  check_chroot "$root"
  printf '%s\n' "$stamp_text" | $sudo tee "$root/.cudainfer-stamp" >/dev/null
}

create() {
  if [ -f "$root/.cudainfer-stamp" ] && [ "$(cat "$root/.cudainfer-stamp")" = "$stamp_text" ]; then
    log "chroot up to date: $root"
    return
  fi
  add_new_packages && return
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || {
    log "installing debootstrap"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends debootstrap
  }
  local start=$SECONDS new="$root.new"
  log "making a trixie chroot in $root (packages: ${packages[*]})"
  mkdir -p "$(dirname "$root")"
  for d in "$new" "$root"; do
    if [ -e "$d" ]; then
      no_mounts_under "$d"
      $sudo rm -rf --one-file-system "$d"
    fi
  done
  # minbase with nothing extra, then apt in the chroot: apt resolves the
  # dependencies (debootstrap --include leaves some unconfigured, e.g.
  # dconf-service without a dbus-session-bus) and skips recommends.
  $sudo env PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase trixie "$new" "$mirror" ||
    die "debootstrap failed (log: $new/debootstrap/debootstrap.log)"
  # No daemons started by package scripts inside the chroot.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$new/usr/sbin/policy-rc.d" >/dev/null
  $sudo chmod 755 "$new/usr/sbin/policy-rc.d"
  $sudo mount -t proc proc "$new/proc"
  mounted+=("$new/proc")
  local rc=0
  $sudo chroot "$new" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 /bin/sh -euc '
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@"
    apt-get clean
    rm -rf /var/lib/apt/lists/*
  ' install "${packages[@]}" || rc=$?
  [ $rc -eq 0 ] || die "installing the packages in the chroot failed (exit $rc)"
  check_chroot "$new"
  cleanup
  printf '%s\n' "$stamp_text" | $sudo tee "$new/.cudainfer-stamp" >/dev/null
  $sudo mv "$new" "$root"
  log "chroot made in $((SECONDS - start)) s: $root ($($sudo du -sh --one-file-system "$root" | cut -f1))"
}

# --- mounts -------------------------------------------------------------

mounted=()
# Unmounts what this script mounted, newest first (on exit, failure included).
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    $sudo umount -R "${mounted[i]}" 2>/dev/null || $sudo umount -R -l "${mounted[i]}" ||
      log "warning: could not unmount ${mounted[i]}"
  done
  mounted=()
}

# mount_in SOURCE TARGET_INSIDE ARGS...: mounts and remembers it for cleanup.
mount_in() {
  local target="$root$2"
  $sudo mkdir -p "$target"
  shift 2
  $sudo mount "$@" "$target"
  mounted+=("$target")
}

# Bind-mounts host folder $1 at the same path inside, unless a folder already
# bound contains it.
bind_same() {
  local dir b
  dir=$(realpath "$1")
  for b in "${bound[@]}"; do
    case "$dir/" in "$b"/*) return ;; esac
  done
  mount_in "$dir" "$dir" --bind "$dir"
  bound+=("$dir")
}

bound=()
# Sets up the mounts; the rest of the script runs with them.
mount_all() {
  # One run at a time on a chroot; mounts found under it then were left by
  # a run that was killed before its cleanup (they would fail the binds).
  exec 9>"$root.lock"
  flock 9
  local stale
  stale=$(findmnt -rn -o TARGET | awk -v d="$root" 'index($0, d "/") == 1' | sort -r)
  if [ -n "$stale" ]; then
    log "unmounting what an interrupted run left under $root"
    while read -r m; do
      $sudo umount -R "$m" 2>/dev/null || $sudo umount -R -l "$m" 2>/dev/null || true
    done <<<"$stale"
    no_mounts_under "$root"
  fi
  mount_in proc /proc -t proc proc
  mount_in /sys /sys --rbind /sys
  $sudo mount --make-rslave "$root/sys"
  mount_in /dev /dev --rbind /dev
  $sudo mount --make-rslave "$root/dev"
  mount_in tmpfs /tmp -t tmpfs -o mode=1777 tmpfs
  bind_same "$top"
  bind_same "$shared"
  bind_same "$(dirname "$ort")"
  bind_same "$target_dir"
}

# The environment inside: clean, with a registry of its own in the tmpfs /tmp.
inside() {
  $sudo chroot "$root" /usr/bin/env -i \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    GST_REGISTRY_1_0=/tmp/gst-registry-1.26.bin \
    GST_PLUGIN_PATH=/tmp/cudainfer-plugin \
    ORT_DYLIB_PATH="$ort" CUDAINFER_SHARED_DIR="$shared" \
    RUST_BACKTRACE=1 ${GST_DEBUG:+GST_DEBUG="$GST_DEBUG"} \
    "$@"
}

# Same search as the tests (tests/common/mod.rs shared_dir()).
find_shared() {
  local c
  for c in "${CUDAINFER_SHARED_DIR:-}" "$top/../shared" /work/shared; do
    if [ -n "$c" ] && [ -f "$c/models/yolox_nano.onnx" ]; then
      realpath "$c"
      return
    fi
  done
  die "test data not found: set CUDAINFER_SHARED_DIR to the folder holding models/ and media/"
}

prepare_run() {
  [ -f "$root/.cudainfer-stamp" ] && [ "$(cat "$root/.cudainfer-stamp")" = "$stamp_text" ] || create
  shared=$(find_shared)
  ort=${ORT_DYLIB_PATH:-$top/.ort/libonnxruntime.so}
  [ -e "$ort" ] || die "no ONNX Runtime library at $ort: run scripts/setup-deps.sh"
  ort=$(realpath "$ort")
  target_dir=${CARGO_TARGET_DIR:-$top/target}
  mkdir -p "$target_dir"
  target_dir=$(realpath "$target_dir")
}

# --- the suite ----------------------------------------------------------

run_tests() {
  local start=$SECONDS json list plugin
  command -v cargo >/dev/null || die "cargo not found on PATH"
  prepare_run
  local build_start=$SECONDS
  log "building the tests (cargo test --release --no-run, target dir $target_dir)"
  json=$(mktemp)
  # The meson build's own command (gst/cargo.sh), so CI reuses its artifacts.
  cargo test --release --workspace --no-run --message-format=json \
    --manifest-path "$top/Cargo.toml" --target-dir "$target_dir" >"$json"
  # "manifest dir<TAB>executable" for every test binary; the plugin .so.
  list=$(python3 - "$json" <<'EOF'
import json, os, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact":
        continue
    if m["profile"]["test"] and m.get("executable"):
        print("test\t%s\t%s\t%s" % (os.path.dirname(m["manifest_path"]), m["executable"], m["target"]["name"]))
    elif "cdylib" in m["target"]["kind"]:
        for f in m["filenames"]:
            if f.endswith("/libgstcudainfer.so"):
                print("plugin\t%s" % f)
EOF
  )
  rm -f "$json"
  # Here-strings: an early-exiting reader (grep -q) on a pipe kills the writer
  # with SIGPIPE, which pipefail would report as a failure.
  plugin=$(awk -F'\t' '$1 == "plugin" { print $2; exit }' <<<"$list")
  [ -n "$plugin" ] || die "cargo did not report libgstcudainfer.so"
  grep -q '^test' <<<"$list" || die "cargo reported no test binaries"
  log "built in $((SECONDS - build_start)) s"

  mount_all
  $sudo mkdir -p "$root/tmp/cudainfer-plugin"
  $sudo cp "$plugin" "$root/tmp/cudainfer-plugin/"
  printf '%s\n' "$list" | grep '^test' | cut -f2- | $sudo tee "$root/tmp/test-binaries.tsv" >/dev/null
  # The Rust half of the ABI check here (no Rust toolchain inside), the C
  # half inside against 1.26's headers.
  python3 "$top/tests/abi/check_abi.py" rust | $sudo tee "$root/tmp/abi-rust.txt" >/dev/null
  local suite_start=$SECONDS rc=0
  inside /bin/bash "$top/scripts/trixie-chroot.sh" _suite /tmp/test-binaries.tsv || rc=$?
  log "GStreamer 1.26 suite: $((SECONDS - suite_start)) s in the chroot, $((SECONDS - start)) s in all, exit $rc"
  return $rc
}

# Runs inside the chroot: every test binary, the Python tests, the ABI check,
# the inspect check.
suite() {
  local list=$1 failed=() dir bin name t
  echo "=== GStreamer inside the chroot:"
  gst-launch-1.0 --version
  grep PRETTY_NAME /etc/os-release
  while IFS=$'\t' read -r dir bin name; do
    echo "=== rust: $name ($bin)"
    t=$SECONDS
    if (cd "$dir" && "$bin"); then
      echo "=== rust: $name: ok ($((SECONDS - t)) s)"
    else
      echo "=== rust: $name: FAILED ($((SECONDS - t)) s)"
      failed+=("rust:$name")
    fi
  done <"$list"
  echo "=== python-appsink"
  python3 "$top/tests/python/test_print_detections.py" || failed+=(python-appsink)
  echo "=== python-analytics"
  python3 "$top/tests/python/test_analytics_meta.py" || failed+=(python-analytics)
  echo "=== abi (meta/analytics/ffi.rs against the GstAnalytics headers)"
  python3 "$top/tests/abi/check_abi.py" c /tmp/abi-rust.txt || failed+=(abi)
  echo "=== inspect"
  "$top/tests/inspect/check_inspect.sh" -p /tmp/cudainfer-plugin || failed+=(inspect)
  if [ ${#failed[@]} -gt 0 ]; then
    echo "=== FAILED on $(gst-launch-1.0 --version | sed -n 1p): ${failed[*]}"
    return 1
  fi
  echo "=== all passed on $(gst-launch-1.0 --version | sed -n 1p)"
}

trap cleanup EXIT
trap 'exit 130' INT TERM

cmd=${1:-test}
[ $# -gt 0 ] && shift
case $cmd in
  test) run_tests ;;
  create) create ;;
  path) echo "$root" ;;
  run)
    [ $# -gt 0 ] || die "usage: $0 run CMD..."
    prepare_run
    mount_all
    # The plugin as last built, if any (GST_PLUGIN_PATH inside).
    if [ -f "$target_dir/release/libgstcudainfer.so" ]; then
      $sudo mkdir -p "$root/tmp/cudainfer-plugin"
      $sudo cp "$target_dir/release/libgstcudainfer.so" "$root/tmp/cudainfer-plugin/"
    fi
    inside "$@"
    ;;
  _suite) suite "$@" ;;
  -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$cmd' (test, create, run, path)" ;;
esac
