#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the Debian 12 package cudainfer_<version>_amd64.deb with dpkg-deb
# from a staging tree: the GStreamer plugin, cudainfer-run, its systemd unit,
# an example /etc/cudainfer/config.toml (a conffile), README.Debian, the
# copyright file (with the licences of the Rust crates linked in) and the
# ONNX Runtime fetch script. Depends: from dpkg-shlibdeps, plus the
# GStreamer plugin packages the pipelines use.
#
#   deploy/debian/build-deb.sh [OUTDIR]        default OUTDIR: <checkout>/build/deb
#
# Cargo: release build into $CARGO_TARGET_DIR, default <checkout>/build/cargo-target
# (the meson build's and CI's). The version is the workspace's (Cargo.toml).
# DEB_MAINTAINER sets the Maintainer field. The .deb's path is printed last,
# alone on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LIB_TAG=build-deb
# shellcheck source=../lib.sh
. "$here/../lib.sh"
top=$LIB_TOP

outdir=${1:-$top/build/deb}
target_dir=${CARGO_TARGET_DIR:-${BUILD_DIR:-$top/build}/cargo-target}
maintainer=${DEB_MAINTAINER:-gst-cudainfer developers <gst-cudainfer@example.invalid>}
gst_plugin_dir=usr/lib/x86_64-linux-gnu/gstreamer-1.0

work=$(mktemp -d)
trap 'rm -rf "$work"; print_times' EXIT
# dpkg-shlibdeps expects the package's files under debian/<package>/.
stage=$work/debian/cudainfer

if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
for tool in cargo dpkg-deb dpkg-shlibdeps objcopy python3; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian: build-essential dpkg-dev python3; Rust: rustup)"
done

version=$(deb_version)
[ -n "$version" ] || die "no version in Cargo.toml"
deb="$outdir/cudainfer_${version}_amd64.deb"

build() {
  # --locked: the package is built from Cargo.lock as committed.
  cargo build --release --locked -p gst-plugin-cudainfer -p cudainfer-run \
    --manifest-path "$top/Cargo.toml" --target-dir "$target_dir"
}

stage_files() {
  install -d "$stage/DEBIAN" "$stage/$gst_plugin_dir" "$stage/usr/bin" \
    "$stage/lib/systemd/system" "$stage/etc/cudainfer" \
    "$stage/usr/share/doc/cudainfer" "$stage/usr/share/cudainfer"
  # Without debug info (the release profile keeps line tables): a fraction of
  # the size; the symbol table stays, so backtraces still name functions.
  objcopy --strip-debug --remove-section=.comment \
    "$target_dir/release/libgstcudainfer.so" "$stage/$gst_plugin_dir/libgstcudainfer.so"
  chmod 0644 "$stage/$gst_plugin_dir/libgstcudainfer.so"
  objcopy --strip-debug --remove-section=.comment \
    "$target_dir/release/cudainfer-run" "$stage/usr/bin/cudainfer-run"
  chmod 0755 "$stage/usr/bin/cudainfer-run"
  install -m 0644 "$here/cudainfer-run.service" "$stage/lib/systemd/system/"
  install -m 0644 "$here/config.toml" "$stage/etc/cudainfer/config.toml"
  install -m 0755 "$here/fetch-onnxruntime.sh" "$stage/usr/share/cudainfer/"
  install -m 0644 "$here/README.Debian" "$stage/usr/share/doc/cudainfer/"
  write_copyright "$stage/usr/share/doc/cudainfer/copyright"
  local f
  for f in postinst prerm postrm; do
    install -m 0755 "$here/$f" "$stage/DEBIAN/$f"
  done
  echo /etc/cudainfer/config.toml >"$stage/DEBIAN/conffiles"
}

# The project's licence and, since they are linked into both binaries, every
# Rust crate's (normal dependencies of the two packages, from cargo metadata).
write_copyright() {
  local crates
  crates=$(cargo metadata --format-version 1 --locked --manifest-path "$top/Cargo.toml" \
    --filter-platform x86_64-unknown-linux-gnu | python3 -c '
import json, sys
m = json.load(sys.stdin)
pkgs = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
todo = [p["id"] for p in m["packages"] if p["name"] in ("gst-plugin-cudainfer", "cudainfer-run")]
seen = set(todo)
while todo:
    for d in nodes[todo.pop()]["deps"]:
        if any(k["kind"] is None for k in d["dep_kinds"]) and d["pkg"] not in seen:
            seen.add(d["pkg"])
            todo.append(d["pkg"])
for p in sorted((pkgs[i] for i in seen), key=lambda p: (p["name"], p["version"])):
    if p["source"] is not None:
        print(" %s %s: %s" % (p["name"], p["version"], p["license"] or "see the crate"))
')
  cat >"$1" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: gst-cudainfer
Comment: Built from the gst-cudainfer sources, version $(cargo_version).

Files: *
Copyright: the gst-cudainfer developers
License: MIT or Apache-2.0

Files: usr/bin/cudainfer-run usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstcudainfer.so
Copyright: the authors of each Rust crate listed below
License: various
 Both binaries link these crates from crates.io statically; each crate's
 licence (an SPDX expression) is given beside it, its texts are in the crate's
 sources on crates.io:
 .
$crates

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
EOF
}

control() {
  local shlibs installed_size
  # The shared libraries' packages and minimum versions, from their symbols files.
  mkdir -p "$work/debian"
  printf 'Source: cudainfer\n\nPackage: cudainfer\nArchitecture: amd64\n' >"$work/debian/control"
  shlibs=$(cd "$work" && dpkg-shlibdeps -O -e"debian/cudainfer/usr/bin/cudainfer-run" \
    -e"debian/cudainfer/$gst_plugin_dir/libgstcudainfer.so" 2>"$work/shlibdeps.log" |
    sed -n 's/^shlibs:Depends=//p')
  [ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies: $(cat "$work/shlibdeps.log")"
  # The plugin is built for the GStreamer 1.22 API (and says so in its
  # descriptor, which older cores refuse) whatever symbols it happens to use.
  shlibs=$(sed -E 's/(libgstreamer[a-z0-9.-]*1\.0-0) \(>= [0-9.]+\)/\1 (>= 1.22)/g' <<<"$shlibs")
  grep -v 'useless dependency' "$work/shlibdeps.log" >&2 || true
  installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
  # plugins-base: uridecodebin, videoconvert, the app elements; good: rtspsrc,
  # souphttpsrc, qtdemux, jpegdec, splitmuxsink; bad: h264parse and nvcodec
  # (nvh264dec, nvh264enc). libav: software H.264/H.265 decoding where there
  # is no GPU. ugly: x264enc for CPU recordings.
  cat >"$stage/DEBIAN/control" <<EOF
Package: cudainfer
Version: $version
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $shlibs, gstreamer1.0-plugins-base (>= 1.22), gstreamer1.0-plugins-good (>= 1.22), gstreamer1.0-plugins-bad (>= 1.22)
Recommends: gstreamer1.0-libav, gstreamer1.0-tools, ca-certificates
Suggests: gstreamer1.0-plugins-ugly, python3-pip
Section: video
Priority: optional
Description: GPU object detection elements for GStreamer, and a camera service
 GStreamer elements that run ONNX object detection and classification models
 on video through ONNX Runtime (CPU, or CUDA with zero-copy NVDEC frames):
 cudapreprocess, trtinfer, infertrack, inferoverlay and inferpublish.
 .
 cudainfer-run is a multi-camera service on top (RTSP, HTTP and file
 cameras; JSON lines, MQTT and MP4 recordings; REST API and Prometheus
 metrics), with a hardened systemd unit.
 .
 ONNX Runtime 1.31 is loaded at run time and not included: see
 /usr/share/doc/cudainfer/README.Debian.
EOF
  (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$work/md5sums"
  mv "$work/md5sums" "$stage/DEBIAN/md5sums"
}

package() {
  mkdir -p "$outdir"
  rm -f "$deb"
  # Reproducible: file times from the last commit, when there is one.
  local epoch
  epoch=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)
  find "$stage" -exec touch -h -d "@$epoch" {} +
  SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
}

log "cudainfer $version, cargo target dir $target_dir"
timed "cargo build --release (plugin, cudainfer-run)" build
timed "stage files, copyright" stage_files
timed "dpkg-shlibdeps, control" control
timed "dpkg-deb --build" package
dpkg-deb --field "$deb" Version Depends Recommends Suggests Installed-Size >&2
log "package: $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
