#!/usr/bin/env bash
# Whether this machine can build and run containers at all: installs
# buildah, podman and runc if missing, then runs a one-binary root file system
# with podman (plainly, or with the fallback flags of lib.sh's
# podman_run_setup). Exit 0 when it can; otherwise exit 1 with the reason,
# so that CI can tell a machine without containers (the image checks are
# then skipped, and the shard test runs its instances as processes) from a
# failure of the images themselves. With ENV_FILE, writes the podman flags
# that worked there (PODMAN_FLAGS=…, PODMAN_RUN_FLAGS=…), for sourcing.
#
#   deploy/container/preflight.sh [ENV_FILE]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
LIB_TAG=preflight
# shellcheck source=deploy/lib.sh
. "$top/deploy/lib.sh"

if ! have_root; then
  log "no root (nor sudo without a password): containers are not tried here"
  exit 1
fi
need_tools buildah buildah podman podman runc runc busybox busybox-static file file
tmp=$(mktemp -d)
trap '$SUDO rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rootfs/bin"
busybox=$(command -v busybox)
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  # busybox-static installs the static build as /bin/busybox.
  busybox=/bin/busybox
fi
cp "$busybox" "$tmp/rootfs/bin/busybox"
podman_run_setup --rootfs "$tmp/rootfs"
if out=$("${PODMAN[@]}" run --rm "${PODMAN_RUN_ARGS[@]}" --rootfs "$tmp/rootfs" /bin/busybox echo ok 2>&1) &&
  [ "$out" = ok ]; then
  log "podman runs containers here (${PODMAN[*]} run ${PODMAN_RUN_ARGS[*]})"
  if [ $# -ge 1 ]; then
    global=("${PODMAN[@]}")
    [ -z "$SUDO" ] || global=("${global[@]:1}")
    printf 'PODMAN_FLAGS=%q\nPODMAN_RUN_FLAGS=%q\n' "${global[*]:1}" "${PODMAN_RUN_ARGS[*]}" >"$1"
  fi
  exit 0
fi
log "podman cannot run a container here: $out"
exit 1
