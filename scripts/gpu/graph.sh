#!/usr/bin/env bash
# CUDA graphs (trtinfer cuda-graph=true), under ../shared/gpu/run.sh
# after scripts/gpu-stage.sh:
#   bash .gpu-stage/run/run.sh bash /tmp/gpu/app/gpu-run graph
# 1. GPU = CPU with the graph (tests/pipeline_gpu.rs cuda_graph_detections_equal_cpu_detections).
# 2. Inference alone per batch size, fp32 with and without the graph
#    (infer_bench, YOLOX-nano dynamic batch).
# 3. 16 streams as fast as they decode, with and without the graph, one run.
set -u
# shellcheck source=scripts/gpu/lib.sh
. "$(dirname "$0")/lib.sh"
out=${OUT:-/tmp/gpu-graph}
mkdir -p "$out"
export CUDAINFER_SHARED_DIR=$GPU_DATA
clip=$GPU_DATA/media/dog_1080p.mp4
model=$GPU_DATA/models/yolox_nano_dynbatch.onnx
timeout -k 10 200 "$GPU_APP/gpu-tests" --test-threads=1 --nocapture --exact cuda_graph_detections_equal_cpu_detections \
  > "$out/gpu-tests.txt" 2>&1
echo "gpu-tests rc=$?: $(grep -o 'VERDICT.*' "$out/gpu-tests.txt"; grep -m1 -E 'panicked' -A2 "$out/gpu-tests.txt" | tr '\n' ' ')"
timeout -k 10 200 "$GPU_APP/infer_bench" "$model" --batches 1,8,16,32 --configs fp32,graph \
  > "$out/infer.md" 2> "$out/infer.log"
echo "infer_bench rc=$?"
cat "$out/infer.md"
for graph in false true; do
  modes=full
  [ $graph = false ] && modes=decode,full
  timeout -k 10 180 "$GPU_APP/pipeline_bench" "$clip" "$model" --streams 16 --loops 2 --modes "$modes" \
    --infer "max-batch-size=32 cuda-graph=$graph" > "$out/bench-$graph.md" 2> "$out/bench-$graph.log"
  echo "pipeline_bench cuda-graph=$graph rc=$?"
  grep '^|' "$out/bench-$graph.md"
done
