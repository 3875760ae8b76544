#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60), from
# the seed corpus fuzz/corpus/<target>, copied to a scratch directory so the
# checkout stays clean. Fails if a target crashes (panic, overflow, timeout,
# an allocation over fuzz/src/lib.rs's cap), printing the input and how to
# reproduce it. Installs cargo-fuzz (pinned) when it is missing.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Environment: FUZZ_TARGET_DIR (build directory, default fuzz/target),
# FUZZ_WORK_DIR (scratch corpus and crashes, default a new temporary folder,
# kept when a target crashes).
#
# The targets are built without a sanitizer (-s none): the fuzzed code is
# safe Rust, so ASan would find nothing that a panic does not, and it needs
# nightly -Z flags (RUSTC_BOOTSTRAP=1 on a stable toolchain) and twice the
# build time. Overflow checks are on (cargo fuzz builds release with debug
# assertions).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top/fuzz"

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(yolox_decode yolov8_decode ssd_decode classifier_decode labels model_shapes
  api_request camera_uri)

t0=$SECONDS
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "--- installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
echo "$(cargo fuzz --version) ($((SECONDS - t0)) s)"

t1=$SECONDS
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$top/fuzz/target}
cargo fuzz build -s none
host=$(rustc -vV | sed -n 's/^host: //p')
bin=$CARGO_TARGET_DIR/$host/release
echo "built the fuzz targets ($((SECONDS - t1)) s)"

work=${FUZZ_WORK_DIR:-$(mktemp -d -t cudainfer-fuzz.XXXXXX)}
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/crashes/$t"
  cp -r "$top/fuzz/corpus/$t/." "$work/corpus/$t/"
  echo "--- fuzzing $t for $seconds s"
  t2=$SECONDS
  if "$bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/crashes/$t/" -print_final_stats=1 \
      "$work/corpus/$t" >"$work/$t.log" 2>&1; then
    echo "$t: no crash; $(grep -Eo 'Done [0-9]+ runs' "$work/$t.log" || true), corpus $(ls "$work/corpus/$t" | wc -l) inputs ($((SECONDS - t2)) s)"
  else
    failed+=("$t")
    echo "$t: CRASH ($((SECONDS - t2)) s); the end of its log:"
    tail -n 40 "$work/$t.log"
    for f in "$work/crashes/$t"/*; do
      [ -f "$f" ] || continue
      echo "input $f ($(wc -c <"$f") bytes):"
      od -A x -t x1z "$f" | sed -n 1,20p
      echo "reproduce: (cd fuzz && cargo fuzz run -s none $t $f)"
    done
  fi
done

echo "fuzzing took $((SECONDS - t0)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "error: crashes in: ${failed[*]} (inputs kept in $work/crashes)" >&2
  exit 1
fi
[ -n "${FUZZ_WORK_DIR:-}" ] || rm -rf "$work"
