#!/usr/bin/env bash
# Builds the plugin, the GPU test binary and the benchmark in release mode and
# stages them with the GPU runtime (../shared/gpu/prepare.sh) in .gpu-stage/.
# Then run scripts/gpu-check.sh on the GPU machine (see README, "GPU check").
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
shared=${CUDAINFER_SHARED_DIR:-$top/../shared}
cargo build --release --example pipeline_bench --example infer_bench
test_bin=$(cargo test --release --test gpu --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"):
        print(m["executable"])')
art=target/gpu-artifacts
rm -rf "$art" && mkdir -p "$art"
ln -s "$top/target/release/libgstcudainfer.so" "$art/libgstcudainfer.so"
ln -s "$test_bin" "$art/gpu-tests"
ln -s "$top/target/release/examples/pipeline_bench" "$art/pipeline_bench"
ln -s "$top/target/release/examples/infer_bench" "$art/infer_bench"
ln -s "$top/scripts/gpu-check.sh" "$art/gpu-check.sh"
"$shared/gpu/prepare.sh" "$art"/*
