#!/usr/bin/env bash
# The project's test command: installs the dependencies
# (scripts/setup-deps.sh), configures meson in build/ (or $BUILD_DIR) and
# runs every test: the Rust tests, the Python appsink program and the
# gst-inspect check.
#
#   scripts/run-tests.sh [MESON_TEST_ARGS...]     e.g. --suite python
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${BUILD_DIR:-$top/build}

"$top/scripts/setup-deps.sh"
if [ -f "$build/meson-private/coredata.dat" ]; then
  # An existing build: reconfigure, or start it afresh if that fails.
  meson setup --reconfigure "$build" || meson setup --wipe "$build"
else
  meson setup "$build"
fi
meson test -C "$build" --print-errorlogs "$@"
