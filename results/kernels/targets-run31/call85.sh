#!/bin/bash
# Run 31: every target's bench rows on the landed tree, in one call, on the card the call gets (the targets
# name the H200): BK-Core from a CUDA graph (profiled) and eager, the window at every N from a CUDA graph,
# linear attention against fla (eager, 4K-16K) and the diagonal scan against accelerated-scan (graph, 512-16K),
# then, as the budget allows, the BK-Core (look-back included) and window GPU tests. Output: $OUT/run31.tgz.
# fla autotunes on its first call (still running 100 s in, when run 36 stopped it).
source results/kernels/steps.sh
begin run31 580
# the anchors' wheels, where carried (.gpu-anchors/: fla-core 0.6.0, accelerated-scan 0.3.1, einops)
if [ -d .gpu-anchors ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/anchors .gpu-anchors/*.whl && export PYTHONPATH=/tmp/anchors:$PYTHONPATH
fi
K="python3 bench/kernels.py"
TAILN=12 step bk-graph 80 $K --ops bk_core --sizes 16384 --cuda-graph --profile --out $R/bench_bk_graph.json
TAILN=12 step bk-eager 80 $K --ops bk_core --sizes 16384 --out $R/bench_bk_eager.json
TAILN=16 step window 140 $K --ops window_attn --sizes 2048,4096,8192,16384 --cuda-graph \
  --skip-anchors score_mod,sdpa --profile --out $R/bench_window.json
TAILN=12 step linear 200 $K --ops linear_attn --sizes 4096,8192,16384 --skip-anchors sdpa --out $R/bench_linear.json
TAILN=16 step scan 150 $K --ops scan --cuda-graph --isolate scan --skip-anchors accelerated_scan.warp \
  --sizes 512,2048,4096,8192,16384 --out $R/bench_scan.json
T="python3 -m pytest --noconftest -q -p no:cacheprovider"
TAILN=4 step tests-bk 170 $T tests/kernels/test_bk_core_gpu.py
TAILN=4 step tests-window 90 $T tests/kernels/test_window_attn_gpu.py
echo "== done, $(left) s left"
