#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the OCI images of cudainfer-run with buildah, from a Debian 12
# (bookworm) minbase root file system made here with debootstrap (no registry
# is pulled from):
#
#   localhost/cudainfer-run:cpu   the .deb and its runtime packages, ONNX Runtime 1.31.1 (CPU)
#   localhost/cudainfer-run:gpu   the same with onnxruntime-gpu 1.31.1 and the CUDA 13
#                                 libraries it and NVRTC need (/opt/nvidia/lib); the
#                                 driver's libraries come from the NVIDIA container toolkit
#
#   deploy/container/build-images.sh cpu|gpu|all
#
# Layers, so that a code change rebuilds (and a host pulls) only the last:
#   1. bookworm + the package's Depends and chosen Recommends (updated), the user
#   2. gpu only: the CUDA libraries (2.1 GB)
#   3. ONNX Runtime in /opt/onnxruntime/lib
#   4. the .deb
# Each is kept as an image (localhost/cudainfer-build:*) labelled with a key
# of its inputs and reused while the key matches; CUDAINFER_NO_CACHE=1
# rebuilds all. Layer 1 is remade with the root file system (every
# CUDAINFER_ROOTFS_MAX_DAYS days, default 30) and so gets Debian's updates.
#
# Environment: CUDAINFER_DEB=FILE uses that package instead of building it
# (deploy/debian/build-deb.sh); WHEEL_CACHE (default <cache>/wheels) keeps
# the PyPI wheels; DEBIAN_MIRROR, CUDAINFER_CACHE as in deploy/lib.sh.
# Needs root (or sudo) and buildah, podman.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LIB_TAG="build-images"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
top=$LIB_TOP

variants=()
case ${1:-} in
  cpu | gpu) variants=("$1") ;;
  all) variants=(cpu gpu) ;;
  *)
    awk 'NR > 2 && /^#/ { sub(/^# ?/, ""); print; next } NR > 2 { exit }' "$0" >&2
    exit 2
    ;;
esac

have_root || die "needs root (or sudo without a password): buildah mounts and chroot"
need_tools buildah buildah podman podman debootstrap debootstrap

repo=localhost/cudainfer-run
build_repo=localhost/cudainfer-build
uid=10001
fetch="$top/deploy/debian/fetch-onnxruntime.sh"
export WHEEL_CACHE=${WHEEL_CACHE:-$LIB_CACHE/wheels}
mkdir -p "$WHEEL_CACHE"

containers=()
logs=$(mktemp -d)
finish() {
  local rc=$? c
  lib_cleanup
  rm -rf "$logs"
  for c in "${containers[@]}"; do
    [ -n "$c" ] || continue
    $SUDO buildah rm "$c" >/dev/null 2>&1 || true
  done
  print_times
  exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

# A key for the recipe: these scripts. Any change to them rebuilds every layer.
recipe_key=$(cat "$0" "$top/deploy/lib.sh" "$fetch" | sha256sum | cut -c1-16)

label_of() {
  $SUDO podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true
}

# stage TAG KEY PARENT DESCRIPTION FN: the image TAG made from PARENT
# ("scratch" or an image) by FN, called with the working container's mount
# point, and committed as one layer; skipped when TAG already carries KEY.
stage() {
  local tag=$1 key=$2 parent=$3 what=$4 fn=$5 ctr mnt
  if [ -z "${CUDAINFER_NO_CACHE:-}" ] && [ "$(label_of "$tag" cudainfer.key)" = "$key" ]; then
    log "$what: reusing $tag"
    return
  fi
  log "$what: building $tag"
  ctr=$($SUDO buildah from --pull=never --quiet "$parent")
  containers+=("$ctr")
  mnt=$($SUDO buildah mount "$ctr")
  "$fn" "$mnt"
  lib_chroot_umount
  $SUDO buildah umount "$ctr" >/dev/null
  $SUDO buildah config --label "cudainfer.key=$key" --created-by "cudainfer: $what" "$ctr"
  [ -z "$stage_config" ] || "$stage_config" "$ctr"
  $SUDO buildah commit --quiet --format oci --rm "$ctr" "$tag" >/dev/null
  containers=("${containers[@]/$ctr/}")
}
# A function that sets the image's configuration before the commit, or empty.
stage_config=""

image_id() { $SUDO podman image inspect --format '{{.Id}}' "$1"; }

# quiet NAME CMD...: CMD's output goes to a log, shown (its end) only if it fails.
quiet() {
  local name=$1
  shift
  "$@" >"$logs/$name.log" 2>&1 || {
    local rc=$?
    tail -n 40 "$logs/$name.log" >&2
    log "$name failed (exit $rc)"
    return $rc
  }
}

# Leaves out what a container never reads: apt's lists and caches, logs,
# documentation but the copyright files, manuals, translations; and
# whatever named the build host.
slim() {
  local mnt=$1
  $SUDO rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/*.bin \
    "$mnt"/var/cache/apt/archives/*.deb "$mnt"/var/cache/debconf/*-old \
    "$mnt"/var/lib/dpkg/*-old "$mnt"/usr/share/man/* "$mnt"/usr/share/info/* \
    "$mnt"/usr/share/lintian "$mnt"/etc/resolv.conf "$mnt"/etc/hostname
  $SUDO find "$mnt/var/log" -type f -delete
  $SUDO find "$mnt/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  $SUDO find "$mnt/usr/share/doc" -mindepth 1 -type d -empty -delete
  $SUDO find "$mnt/usr/share/locale" -name '*.mo' -delete
}

# --- inputs -----------------------------------------------------------------

deb=${CUDAINFER_DEB:-}
build_deb() { deb=$("$top/deploy/debian/build-deb.sh" "$top/build/deb"); }
[ -n "$deb" ] || timed "build the .deb (build-deb.sh)" build_deb
[ -f "$deb" ] || die "no package at $deb"
deb=$(realpath "$deb")
deb_sha=$(sha256sum "$deb" | cut -c1-16)
version=$(dpkg-deb --field "$deb" Version)
# Depends as package names (versions: bookworm has them; dpkg -i checks),
# then the Recommends a container wants: software decoding, gst-inspect,
# the CA certificates for mqtts://.
mapfile -t packages < <(dpkg-deb --field "$deb" Depends | tr ',' '\n' |
  sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' | grep -v '^$')
packages+=(gstreamer1.0-libav gstreamer1.0-tools ca-certificates)

timed "bookworm root file system (cached tar)" bookworm_rootfs_tar
rootfs_key=$(cat "$ROOTFS_TAR.stamp"; stat -c %Y "$ROOTFS_TAR")

# --- 1. runtime packages ----------------------------------------------------

deps_fn() {
  local mnt=$1
  extract_rootfs "$ROOTFS_TAR" "$mnt"
  # No documentation or manuals from the packages about to be installed.
  $SUDO tee "$mnt/etc/dpkg/dpkg.cfg.d/cudainfer-slim" >/dev/null <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*/LC_MESSAGES/*.mo
path-exclude=/usr/share/lintian/*
EOF
  lib_chroot_mount "$mnt"
  lib_apt_cache_mount "$mnt"
  quiet apt-update in_chroot "$mnt" apt-get update
  quiet apt-upgrade in_chroot "$mnt" apt-get upgrade -y
  quiet apt-install in_chroot "$mnt" apt-get install -y --no-install-recommends "${packages[@]}"
  # The service's user: a fixed uid, so volumes and Kubernetes'
  # runAsUser can name it.
  in_chroot "$mnt" groupadd --gid "$uid" cudainfer
  in_chroot "$mnt" useradd --uid "$uid" --gid "$uid" --no-create-home \
    --home-dir /var/lib/cudainfer --shell /usr/sbin/nologin --comment cudainfer-run cudainfer
  $SUDO install -d -o "$uid" -g "$uid" -m 0750 "$mnt/var/lib/cudainfer"
  $SUDO install -d -o "$uid" -g "$uid" -m 0750 "$mnt/var/cache/cudainfer"
  in_chroot "$mnt" apt-get autoclean -qq >/dev/null
  lib_chroot_umount
  # systemd, pulled in by some dependency, would leave this host's id.
  if [ -s "$mnt/etc/machine-id" ]; then : | $SUDO tee "$mnt/etc/machine-id" >/dev/null; fi
  $SUDO rm -f "$mnt/var/lib/dbus/machine-id"
  slim "$mnt"
  log "$(in_chroot "$mnt" dpkg-query -W -f='.\n' | wc -l) packages"
}
deps_tag=$build_repo:deps
deps_key=$(printf '%s\n' "$recipe_key" "$rootfs_key" "${packages[*]}" | sha256sum | cut -c1-16)
timed "layer 1: bookworm + runtime packages" stage "$deps_tag" "$deps_key" scratch \
  "bookworm and the runtime packages" deps_fn

# --- 2. CUDA libraries (gpu) ------------------------------------------------

cuda_fn() {
  local mnt=$1
  quiet fetch-cuda-libs $SUDO env WHEEL_CACHE="$WHEEL_CACHE" "$fetch" cuda-libs "$mnt/opt/nvidia"
  echo /opt/nvidia/lib | $SUDO tee "$mnt/etc/ld.so.conf.d/cudainfer-nvidia.conf" >/dev/null
  $SUDO chroot "$mnt" /sbin/ldconfig
}

# --- 3. ONNX Runtime --------------------------------------------------------

ort_fn_cpu() { quiet fetch-ort $SUDO env WHEEL_CACHE="$WHEEL_CACHE" "$fetch" cpu "$1/opt/onnxruntime"; }
ort_fn_gpu() { quiet fetch-ort $SUDO env WHEEL_CACHE="$WHEEL_CACHE" "$fetch" gpu "$1/opt/onnxruntime"; }

# --- 4. the package and the image's configuration ---------------------------

deb_fn() {
  local mnt=$1
  lib_chroot_mount "$mnt"
  $SUDO cp "$deb" "$mnt/tmp/cudainfer.deb"
  quiet dpkg-install in_chroot "$mnt" dpkg -i /tmp/cudainfer.deb
  lib_chroot_umount
  # The install made an API token for the systemd unit: one baked into an
  # image would be every deployment's. Containers get theirs at run time.
  $SUDO rm -f "$mnt/etc/cudainfer/token"
  slim "$mnt"
}

revision=$(git -C "$top" rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
variant=""
final_config() {
  local ctr=$1 args=()
  args=(
    --user "$uid:$uid"
    --workingdir /var/lib/cudainfer
    --entrypoint '["/usr/bin/cudainfer-run"]'
    --cmd '["--config","/etc/cudainfer/config.toml"]'
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    --env ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so
    # GStreamer's registry: the home folder may be a volume.
    --env XDG_CACHE_HOME=/var/cache/cudainfer
    --port 8080/tcp
    --stop-signal SIGTERM
    --os linux --arch amd64
    --label org.opencontainers.image.title=cudainfer-run
    --label "org.opencontainers.image.description=Multi-camera inference service on the cudainfer GStreamer elements ($variant)"
    --label "org.opencontainers.image.version=$version"
    --label "org.opencontainers.image.revision=$revision"
    --label "org.opencontainers.image.created=$created"
    --label "org.opencontainers.image.licenses=MIT OR Apache-2.0"
    --label "cudainfer.variant=$variant"
    --label cudainfer.onnxruntime=1.31.1
  )
  if [ "$variant" = gpu ]; then
    args+=(
      # What the NVIDIA container toolkit mounts from the host: the driver's
      # CUDA (compute), nvidia-smi (utility) and NVDEC/NVENC (video) libraries.
      --env NVIDIA_VISIBLE_DEVICES=all
      --env "NVIDIA_DRIVER_CAPABILITIES=compute,utility,video"
      # The toolkit refuses a driver too old for the CUDA 13 libraries.
      --env "NVIDIA_REQUIRE_CUDA=cuda>=13.0"
      --label com.nvidia.volumes.needed=nvidia_driver
      --label cudainfer.cuda=13.0
    )
  fi
  $SUDO buildah config "${args[@]}" "$ctr"
}

fetch_sha=$(sha256sum "$fetch" | cut -c1-16)
sizes=()
for variant in "${variants[@]}"; do
  parent=$deps_tag
  if [ "$variant" = gpu ]; then
    cuda_key=$(printf '%s\n' "$recipe_key" "$(image_id "$deps_tag")" "$fetch_sha" | sha256sum | cut -c1-16)
    timed "layer 2 (gpu): CUDA libraries" stage "$build_repo:deps-cuda" "$cuda_key" "$deps_tag" \
      "CUDA 13 libraries in /opt/nvidia/lib" cuda_fn
    parent=$build_repo:deps-cuda
  fi
  ort_key=$(printf '%s\n' "$recipe_key" "$(image_id "$parent")" "$variant" | sha256sum | cut -c1-16)
  timed "layer 3 ($variant): ONNX Runtime" stage "$build_repo:ort-$variant" "$ort_key" "$parent" \
    "ONNX Runtime 1.31.1 ($variant) in /opt/onnxruntime/lib" "ort_fn_$variant"
  deb_key=$(printf '%s\n' "$recipe_key" "$(image_id "$build_repo:ort-$variant")" "$deb_sha" "$variant" |
    sha256sum | cut -c1-16)
  stage_config=final_config
  timed "layer 4 ($variant): cudainfer $version" stage "$repo:$variant" "$deb_key" "$build_repo:ort-$variant" \
    "cudainfer $version" deb_fn
  stage_config=""
  size=$($SUDO podman image inspect --format '{{.Size}}' "$repo:$variant")
  sizes+=("$(printf '%-28s %6d MB (%s bytes), %s layers' "$repo:$variant" $((size / 1000000)) "$size" \
    "$($SUDO podman image inspect --format '{{len .RootFS.Layers}}' "$repo:$variant")")")
done

# The images these replaced, now untagged (gigabytes for the gpu layers):
# only ours (they carry cudainfer.key), newest first so that children go
# before their parents; one still used by a container stays.
mapfile -t stale < <($SUDO podman images --filter dangling=true --filter label=cudainfer.key \
  --format '{{.ID}}')
for id in "${stale[@]}"; do
  $SUDO podman rmi "$id" >/dev/null 2>&1 || log "kept the old image $id (in use)"
done
[ ${#stale[@]} -eq 0 ] || log "removed ${#stale[@]} replaced images"

print_times
log "images:"
printf '  %s\n' "${sizes[@]}" >&2
