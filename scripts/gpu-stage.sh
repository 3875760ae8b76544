#!/usr/bin/env bash
# Builds the plugin, the GPU test binary and the benchmarks in release mode and
# stages them with the GPU runtime (../shared/gpu/prepare.sh) in .gpu-stage/.
# Then run the checks on the GPU machine through scripts/gpu/run, staged as
# gpu-run (`gpu-run --help` lists them; see docs/testing.md).
# GSTREAMER=1.26 stages Debian 13's GStreamer 1.26 runtime instead of 1.22;
# STAGE_AS=DIR then moves the stage to DIR (ignored by git: .gpu-stage*), so
# that both runtimes can be staged and checked one after the other:
#   scripts/gpu-stage.sh && STAGE_AS=.gpu-stage-126 GSTREAMER=1.26 scripts/gpu-stage.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
shared=${CUDAINFER_SHARED_DIR:-$top/../shared}
# --lib: building examples alone does not build the plugin's cdylib.
cargo build --release -p gst-plugin-cudainfer --lib --example pipeline_bench --example infer_bench --example soak_bench
cargo build --release -p cudainfer-run
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$top/$target ;; esac
plugin=$target/release/libgstcudainfer.so
if [ ! -f "$plugin" ]; then
  echo "gpu-stage: cargo did not produce the plugin $plugin; check the [lib] crate-type (cdylib) in plugins/cudainfer/Cargo.toml" >&2
  exit 1
fi
# The executable of integration test $1, built in release mode.
test_binary() {
  cargo test --release --test "$1" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1" || true
}
test_bin=$(test_binary pipeline_gpu)
overlay_bin=$(test_binary inferoverlay_drawing)
if [ -z "$test_bin" ] || [ -z "$overlay_bin" ]; then
  echo "gpu-stage: cannot build the GPU test binaries (cargo test --release --test pipeline_gpu/inferoverlay_drawing --no-run)" >&2
  exit 1
fi
art=target/gpu-artifacts
rm -rf "$art" && mkdir -p "$art"
ln -s "$plugin" "$art/libgstcudainfer.so"
ln -s "$test_bin" "$art/gpu-tests"
ln -s "$overlay_bin" "$art/overlay-tests"
ln -s "$target/release/examples/pipeline_bench" "$art/pipeline_bench"
ln -s "$target/release/examples/infer_bench" "$art/infer_bench"
ln -s "$target/release/examples/soak_bench" "$art/soak_bench"
ln -s "$target/release/cudainfer-run" "$art/cudainfer-run"
ln -s "$top/scripts/compare-detections.py" "$art/compare-detections.py"
# The checks keep their staged names (gpu-<check>.sh) beside their helper
# library (lib.sh) and the entry point (gpu-run).
for check in "$top"/scripts/gpu/*.sh; do
  name=$(basename "$check")
  [ "$name" = lib.sh ] || name=gpu-$name
  ln -s "$check" "$art/$name"
done
ln -s "$top/scripts/gpu/run" "$art/gpu-run"
"$shared/gpu/prepare.sh" "$art"/*
# gpu-heavy.sh's models (made by make-dynamic-batch.py, not shared data): a
# part of their own (16 MB), stashed to /tmp/gpu/heavy by one more call.
heavy=${HEAVY_MODELS_SRC:-/tmp/heavy-models}
python=${CUDAINFER_PYTHON:-python3}
if [ ! -f "$heavy/yolov12n_dynbatch_fp16.onnx" ] && "$python" -c "import numpy, onnx, onnxruntime, onnxconverter_common, PIL" 2>/dev/null; then
  mkdir -p "$heavy"
  { CUDAINFER_SHARED_DIR=$shared "$python" scripts/make-dynamic-batch.py "$shared/models/yolov12n.onnx" "$heavy/yolov12n_dynbatch.onnx" &&
    "$python" scripts/make-fp16-model.py "$heavy/yolov12n_dynbatch.onnx" "$heavy/yolov12n_dynbatch_fp16.onnx"; } ||
    echo "gpu-stage: making gpu-heavy.sh's models failed (see above)" >&2
fi
if [ -f "$heavy/yolov12n_dynbatch.onnx" ] && [ -f "$heavy/yolov12n_dynbatch_fp16.onnx" ]; then
  mkdir -p .gpu-stage/heavy
  cp "$heavy/yolov12n_dynbatch.onnx" "$heavy/yolov12n_dynbatch_fp16.onnx" .gpu-stage/heavy/
  printf '%s\n' '#!/usr/bin/env bash' 'mkdir -p /tmp/gpu/heavy && cp "$(dirname "$0")"/*.onnx /tmp/gpu/heavy/ && ls -l /tmp/gpu/heavy' \
    > .gpu-stage/heavy/stash.sh
  echo "gpu-stage: gpu-heavy.sh's models in .gpu-stage/heavy: run \"bash .gpu-stage/heavy/stash.sh\" (carry .gpu-stage/heavy) before it"
else
  echo "gpu-stage: no yolov12n_dynbatch(_fp16).onnx in $heavy and $python cannot make them: gpu-heavy.sh will say so (docs/performance.md, \"A heavier model\")" >&2
fi
if [ -n "${STAGE_AS:-}" ]; then
  rm -rf "${top:?}/${STAGE_AS:?}"
  mv "$top/.gpu-stage" "$top/$STAGE_AS"
  echo "gpu-stage: staged in $STAGE_AS"
fi
