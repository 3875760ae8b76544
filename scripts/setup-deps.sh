#!/usr/bin/env bash
# Installs what building and testing gst-cudainfer needs on Debian 12:
# GStreamer 1.22 with the plugins the tests use, meson, PyGObject, and the
# ONNX Runtime shared library (from the pinned `onnxruntime` wheel on PyPI)
# into .ort/ of this checkout. Idempotent: skips what is already there.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
ORT_VERSION=1.31.1

apt_packages=(
  build-essential pkg-config meson ninja-build unzip python3-pip python3-venv
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-libav
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  fonts-dejavu-core
  mosquitto mosquitto-clients  # MQTT broker for the inferpublish tests; mosquitto_sub for the shard test
  prometheus  # scrapes the instances in cudainfer-run's shard test
  openssl ca-certificates  # the mqtts:// test's throw-away CA; the system CAs it checks against
  gstreamer1.0-plugins-ugly  # x264enc, for pipelines/annotate.sh and its test
  libgstrtspserver-1.0-dev gstreamer1.0-rtsp  # cudainfer-run's tests: local RTSP servers
  chromium chromium-driver  # cudainfer-run's operator page in headless Chromium (tests/web)
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

ort_lib="$top/.ort/libonnxruntime.so.$ORT_VERSION"
if [ ! -f "$ort_lib" ]; then
  mkdir -p "$top/.ort"
  tmp=$(mktemp -d)
  # The wheel is a zip that carries the plain C library next to the Python module.
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    "onnxruntime==$ORT_VERSION" -d "$tmp"
  unzip -q -o -j "$tmp"/onnxruntime-"$ORT_VERSION"-*.whl "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$top/.ort"
  rm -rf "$tmp"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" "$top/.ort/libonnxruntime.so"
echo "ONNX Runtime: $top/.ort/libonnxruntime.so"
