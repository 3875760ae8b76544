# Sourced (not run) by the deploy/ scripts: logging, timings, root, the
# package version, the Debian mirror, a cached Debian 12 (bookworm) minbase
# root file system made with debootstrap, and chroot mounts around it.
#
# The caller sets LIB_TAG (the log prefix) before sourcing, and calls
# lib_cleanup from its EXIT trap (it unmounts what lib_chroot_mount mounted).
#
# Environment:
#   DEBIAN_MIRROR           Debian mirror for bookworm; default: the host's apt sources
#                           (so it works where only that mirror is reachable),
#                           else http://deb.debian.org/debian
#   DEBIAN_SECURITY_MIRROR  likewise for bookworm-security
#   CUDAINFER_CACHE         cache folder, default ${XDG_CACHE_HOME:-$HOME/.cache}/cudainfer
#   CUDAINFER_ROOTFS_MAX_DAYS  remake the cached root file system when older (default 30)
# shellcheck shell=bash
# Variables such as ROOTFS_TAR are set here for the scripts that source this.
# shellcheck disable=SC2034

# set -e inside command substitutions too.
shopt -s inherit_errexit

LIB_TAG=${LIB_TAG:-deploy}
LIB_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_CACHE=${CUDAINFER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cudainfer}
# Bump when the way the cached root file system is made changes.
LIB_ROOTFS_RECIPE=2

log() { printf '[%s] %s\n' "$LIB_TAG" "$*" >&2; }
die() {
  printf '[%s] error: %s\n' "$LIB_TAG" "$*" >&2
  exit 1
}

# --- timings ----------------------------------------------------------------

LIB_TIMES=()
LIB_STEP=""
LIB_STEP_START=0
# timed NAME CMD...: runs CMD and records how long it took under NAME. CMD runs
# as a plain command (not in an || list) so that set -e still applies inside
# the functions it calls; a step that ends the script is marked by print_times.
timed() {
  LIB_STEP=$1
  LIB_STEP_START=$(date +%s.%N)
  shift
  "$@"
  # Reached on failure only where set -e is off (an if or || around timed).
  local rc=$?
  if [ $rc -ne 0 ]; then
    lib_end_step "  (FAILED, exit $rc)"
    return $rc
  fi
  lib_end_step ""
}
lib_end_step() {
  [ -n "$LIB_STEP" ] || return 0
  LIB_TIMES+=("$(awk -v n="$LIB_STEP" -v a="$LIB_STEP_START" -v b="$(date +%s.%N)" -v note="$1" \
    'BEGIN { printf "%-48s %7.1f s%s", n, b - a, note }')")
  LIB_STEP=""
}
# Prints the steps' times (from the EXIT trap too: a failed step is marked).
print_times() {
  local t
  lib_end_step "  (FAILED)"
  [ ${#LIB_TIMES[@]} -gt 0 ] || return 0
  printf '[%s] timings:\n' "$LIB_TAG" >&2
  for t in "${LIB_TIMES[@]}"; do printf '  %s\n' "$t" >&2; done
  LIB_TIMES=()
}

# --- root -------------------------------------------------------------------

SUDO=""
# True when this process may act as root: it is root, or sudo works without a
# password prompt (SUDO is then "sudo").
have_root() {
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    return 1
  fi
}

# Installs the Debian packages that provide the given commands, if missing
# (pairs: command package).
need_tools() {
  local missing=()
  while [ $# -ge 2 ]; do
    command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- the package ------------------------------------------------------------

# The version of the packaged crates (the plugin's, inherited from the workspace).
cargo_version() {
  python3 - "$LIB_TOP" <<'EOF'
import sys, tomllib
top = sys.argv[1]
with open(f"{top}/plugins/cudainfer/Cargo.toml", "rb") as f:
    version = tomllib.load(f)["package"]["version"]
if isinstance(version, dict):  # version.workspace = true
    with open(f"{top}/Cargo.toml", "rb") as f:
        version = tomllib.load(f)["workspace"]["package"]["version"]
print(version)
EOF
}

# The Debian version for a Cargo version: a pre-release (1.0.0-rc.1) must
# sort before its release, which '~' does in Debian and '-' does not.
deb_version() { cargo_version | sed 's/-/~/'; }

# --- mirrors ----------------------------------------------------------------

# Prints the first URI of the host's apt sources (one-line .list files and
# deb822 .sources files) that serves suite $1, or nothing.
host_mirror_for() {
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }  # [options]
        if ($(i + 1) == s) { print $i; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # One stanza per paragraph; comment lines are dropped first.
    grep -v '^[[:space:]]*#' "$f" | awk -v s="$suite" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") && uris != "") {
          split(uris, u, " "); print u[1]; found = 1
        }
        types = suites = uris = ""
      }
      /^[[:space:]]*$/ { if (!found) flush(); next }
      tolower($1) == "types:"  { sub(/^[^:]*:[[:space:]]*/, ""); types = $0 }
      tolower($1) == "uris:"   { sub(/^[^:]*:[[:space:]]*/, ""); uris = $0 }
      tolower($1) == "suites:" { sub(/^[^:]*:[[:space:]]*/, ""); suites = $0 }
      END { if (!found) flush() }'
  done | head -n 1
}

debian_mirror() {
  local m=${DEBIAN_MIRROR:-$(host_mirror_for bookworm)}
  echo "${m:-http://deb.debian.org/debian}"
}

debian_security_mirror() {
  local m=${DEBIAN_SECURITY_MIRROR:-$(host_mirror_for bookworm-security)}
  echo "${m:-http://deb.debian.org/debian-security}"
}

# --- mounts -----------------------------------------------------------------

LIB_MOUNTS=()
LIB_UNSAFE_IO=()
# lib_chroot_mount DIR: what apt and the tests need inside DIR (/proc, /dev,
# /dev/pts, a tmpfs /tmp) and the host's resolv.conf; undone by lib_chroot_umount.
lib_chroot_mount() {
  local dir=$1
  $SUDO mkdir -p "$dir/proc" "$dir/dev" "$dir/tmp"
  $SUDO mount -t proc proc "$dir/proc"
  LIB_MOUNTS+=("$dir/proc")
  $SUDO mount --bind /dev "$dir/dev"
  LIB_MOUNTS+=("$dir/dev")
  if [ -d /dev/pts ]; then
    $SUDO mount --bind /dev/pts "$dir/dev/pts"
    LIB_MOUNTS+=("$dir/dev/pts")
  fi
  $SUDO mount -t tmpfs -o mode=1777 tmpfs "$dir/tmp"
  LIB_MOUNTS+=("$dir/tmp")
  # dpkg without fsync: a crash only loses a chroot made again anyway
  # (lib_chroot_umount takes the setting away).
  echo force-unsafe-io | $SUDO tee "$dir/etc/dpkg/dpkg.cfg.d/cudainfer-unsafe-io" >/dev/null
  LIB_UNSAFE_IO+=("$dir/etc/dpkg/dpkg.cfg.d/cudainfer-unsafe-io")
  # A copy, not a bind mount: image builds remove it again before committing.
  $SUDO rm -f "$dir/etc/resolv.conf"
  $SUDO cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
}

# lib_apt_cache_mount DIR: the downloaded packages are kept in the cache
# (CUDAINFER_APT_CACHE=0: not), so that the next chroot or image build
# downloads only what changed. Unmounted with the rest.
lib_apt_cache_mount() {
  local dir=$1 cache="$LIB_CACHE/apt-archives"
  [ "${CUDAINFER_APT_CACHE:-1}" != 0 ] || return 0
  mkdir -p "$cache/partial"
  $SUDO mount --bind "$cache" "$dir/var/cache/apt/archives"
  LIB_MOUNTS+=("$dir/var/cache/apt/archives")
}

# Unmounts what lib_chroot_mount mounted, newest first.
lib_chroot_umount() {
  local i
  for i in "${LIB_UNSAFE_IO[@]}"; do $SUDO rm -f "$i"; done
  LIB_UNSAFE_IO=()
  for ((i = ${#LIB_MOUNTS[@]} - 1; i >= 0; i--)); do
    $SUDO umount "${LIB_MOUNTS[i]}" 2>/dev/null || $SUDO umount -l "${LIB_MOUNTS[i]}" ||
      log "warning: could not unmount ${LIB_MOUNTS[i]}"
  done
  LIB_MOUNTS=()
}

lib_cleanup() { lib_chroot_umount; }

# Fails if anything is mounted at or under $1, so that it is never removed
# with a host folder bound inside.
no_mounts_under() {
  local dir
  dir=$(realpath -m "$1")
  if findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1 { f = 1 } END { exit !f }'; then
    die "something is still mounted under $dir (see findmnt); unmount it first"
  fi
}

# safe_rm DIR: removes a tree made by these scripts, never across mounts.
safe_rm() {
  [ -e "$1" ] || return 0
  no_mounts_under "$1"
  $SUDO rm -rf --one-file-system "$1"
}

# in_chroot DIR CMD...: CMD inside DIR as root with a clean environment.
in_chroot() {
  local dir=$1
  shift
  $SUDO chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# --- the cached root file system --------------------------------------------

# Sets ROOTFS_TAR to the path of a tar of a bookworm minbase root file system, making it
# (debootstrap, about 1-2 min) when missing, made by another recipe or mirror,
# or older than CUDAINFER_ROOTFS_MAX_DAYS days. Its apt sources name bookworm,
# bookworm-updates and bookworm-security on the chosen mirrors.
ROOTFS_TAR=""
bookworm_rootfs_tar() {
  local tar="$LIB_CACHE/bookworm-minbase.tar" mirror security stamp_text age_days
  mirror=$(debian_mirror)
  security=$(debian_security_mirror)
  stamp_text="recipe=$LIB_ROOTFS_RECIPE mirror=$mirror security=$security"
  if [ -f "$tar" ] && [ "$(cat "$tar.stamp" 2>/dev/null)" = "$stamp_text" ]; then
    age_days=$((($(date +%s) - $(stat -c %Y "$tar")) / 86400))
    if [ "$age_days" -lt "${CUDAINFER_ROOTFS_MAX_DAYS:-30}" ]; then
      log "cached bookworm root file system: $tar ($age_days days old)"
      ROOTFS_TAR=$tar
      return
    fi
    log "cached root file system is $age_days days old: making it anew"
  fi
  need_tools debootstrap debootstrap
  mkdir -p "$LIB_CACHE"
  local dir="$LIB_CACHE/bookworm-minbase.new"
  safe_rm "$dir"
  log "debootstrap --variant=minbase bookworm from $mirror"
  $SUDO env PATH="/usr/sbin:/sbin:$PATH" debootstrap --variant=minbase --components=main \
    bookworm "$dir" "$mirror" >&2 ||
    die "debootstrap failed (log: $dir/debootstrap/debootstrap.log)"
  $SUDO rm -f "$dir/etc/apt/sources.list"
  $SUDO tee "$dir/etc/apt/sources.list.d/debian.sources" >/dev/null <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Package scripts start no daemons inside the chroot or image build.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$dir/usr/sbin/policy-rc.d" >/dev/null
  $SUDO chmod 755 "$dir/usr/sbin/policy-rc.d"
  # Nothing of the build host: debootstrap copies its name and resolver.
  $SUDO rm -f "$dir/etc/hostname" "$dir/etc/resolv.conf"
  $SUDO rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
  # Numeric owners and extended attributes (file capabilities) as they are.
  $SUDO tar --numeric-owner --xattrs --xattrs-include='*' -C "$dir" -cf "$tar.tmp" .
  $SUDO chown "$(id -u):$(id -g)" "$tar.tmp"
  mv "$tar.tmp" "$tar"
  printf '%s\n' "$stamp_text" >"$tar.stamp"
  safe_rm "$dir"
  log "made $tar ($(du -h "$tar" | cut -f1))"
  ROOTFS_TAR=$tar
}

# extract_rootfs TAR DIR: unpacks the root file system into DIR (created).
extract_rootfs() {
  $SUDO mkdir -p "$2"
  $SUDO tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$1" -C "$2"
}

# --- podman run -------------------------------------------------------------

# Sets PODMAN (podman and its global flags, with sudo when needed) and
# PODMAN_RUN_ARGS (the flags that `podman run` needs here) for running IMAGE
# ($1), or a root file system ("--rootfs DIR"). PODMAN_FLAGS (global, before `run`) and PODMAN_RUN_FLAGS (after it)
# give them when either is set, as for apps/cudainfer-run/tests/shards.rs.
# Otherwise a plain run is tried first; if it fails, the fallback that works
# where crun refuses cgroups v1 ("cgroups in hybrid mode not supported"):
# --runtime runc, explicit ulimits and the host network.
PODMAN=(podman)
PODMAN_RUN_ARGS=()
podman_run_setup() {
  local image=$1 global=() probe
  # An image, or a root file system given as "--rootfs DIR".
  if [ "$1" = --rootfs ]; then probe=(--rootfs "$2" /bin/true); else probe=(--entrypoint /bin/true "$image"); fi
  PODMAN_RUN_ARGS=()
  if [ -n "${PODMAN_FLAGS+set}${PODMAN_RUN_FLAGS+set}" ]; then
    read -r -a global <<<"${PODMAN_FLAGS:-}"
    read -r -a PODMAN_RUN_ARGS <<<"${PODMAN_RUN_FLAGS:-}"
    log "podman flags from PODMAN_FLAGS='${global[*]}' PODMAN_RUN_FLAGS='${PODMAN_RUN_ARGS[*]}'"
  elif $SUDO podman run --rm "${probe[@]}" >/dev/null 2>&1; then
    log "podman run works without extra flags"
  else
    global=(--runtime runc)
    PODMAN_RUN_ARGS=(--ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --network=host)
    log "a plain podman run failed here: using PODMAN_FLAGS='${global[*]}'" \
      "PODMAN_RUN_FLAGS='${PODMAN_RUN_ARGS[*]}' (set them to choose)"
  fi
  PODMAN=(podman "${global[@]}")
  [ -z "$SUDO" ] || PODMAN=("$SUDO" "${PODMAN[@]}")
}
