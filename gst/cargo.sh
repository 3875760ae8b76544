#!/usr/bin/env bash
# meson's bridge to cargo (see ../meson.build and meson.build here).
#
#   cargo.sh build CARGO SOURCE_ROOT TARGET_DIR OUTPUT
#       cargo build --release, then copies libgstcudainfer.so to OUTPUT
#       (only when it changed).
#   cargo.sh build-bin CARGO SOURCE_ROOT TARGET_DIR OUTPUT
#       cargo build --release -p cudainfer-run, then copies the binary to OUTPUT.
#   cargo.sh test CARGO SOURCE_ROOT TARGET_DIR [CARGO_TEST_ARGS...]
#       cargo test --release --workspace, with ORT_DYLIB_PATH defaulting to
#       SOURCE_ROOT/.ort/libonnxruntime.so (scripts/setup-deps.sh).
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 build|test CARGO SOURCE_ROOT TARGET_DIR ..." >&2; exit 2; }
mode=$1 cargo=$2 src=$3 target_dir=$4
shift 4

case $mode in
  build)
    out=$1
    shift
    "$cargo" build --release --manifest-path "$src/Cargo.toml" --target-dir "$target_dir" "$@"
    built="$target_dir/release/libgstcudainfer.so"
    if ! cmp -s "$built" "$out"; then
      # Copy then rename, so a process that has the old file open keeps it.
      cp "$built" "$out.tmp"
      mv -f "$out.tmp" "$out"
    fi
    ;;
  build-bin)
    out=$1
    shift
    "$cargo" build --release -p cudainfer-run --manifest-path "$src/Cargo.toml" --target-dir "$target_dir" "$@"
    built="$target_dir/release/cudainfer-run"
    if ! cmp -s "$built" "$out"; then
      cp "$built" "$out.tmp"
      mv -f "$out.tmp" "$out"
    fi
    ;;
  test)
    export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$src/.ort/libonnxruntime.so}"
    # One stream, so that a failure's message sits beside cargo's summary in
    # meson's log; every test binary runs even after one fails.
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    set +e
    "$cargo" test --release --workspace --no-fail-fast --manifest-path "$src/Cargo.toml" \
      --target-dir "$target_dir" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
      # The failures again at the end: a CI log that keeps only its tail
      # still names them and where they panicked.
      echo "==== failed tests (their messages are above) ===="
      awk '/^---- .* std(out|err) ----$/ { print; n = 0; next }
           /panicked at/ { n = 8 }
           n > 0 { print; n-- }
           /^test .* FAILED$/ { print }' "$log" | cut -c1-300
    fi
    exit "$rc"
    ;;
  *)
    echo "$0: unknown mode '$mode' (build or test)" >&2
    exit 2
    ;;
esac
