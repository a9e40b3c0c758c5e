#!/bin/bash
# Run 36 (thirty-second session, any card): BK-Core eager with its kernels launched directly (bk_launch_run36.py),
# BK-Core eager in three fresh processes (the host's spread), then linear attention against fla (eager, 4K-16K) and
# the diagonal scan against accelerated-scan's Triton backend (graphs, 512-16K, a child process a case) on the
# landed tree. The anchors' wheels (fla-core 0.6.0, accelerated-scan 0.3.1, einops) are carried in .gpu-anchors/:
#   pip download fla-core==0.6.0 accelerated-scan==0.3.1 einops --no-deps -d .gpu-anchors
# `COMMIT=<tree> bash results/kernels/bk-launch-run36/call91.sh` with .gpu-anchors carried; output $OUT/run36.tgz.
source results/kernels/steps.sh
begin run36 560
python3 -m pip install -q --no-index --no-deps --target /tmp/anchors .gpu-anchors/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/anchors:$PYTHONPATH
K="python3 bench/kernels.py"
TAILN=6 step direct 90 python3 results/kernels/bk-launch-run36/bk_launch_run36.py $R/bk_launch_run36.json
for i in 1 2 3; do
  TAILN=4 step bk-eager$i 30 $K --ops bk_core --sizes 16384 --out $R/bench_bk_eager$i.json
done
TAILN=10 step linear 120 $K --ops linear_attn --sizes 4096,8192,16384 --skip-anchors sdpa --out $R/bench_linear.json
TAILN=30 step scan 220 $K --ops scan --cuda-graph --isolate scan --skip-anchors accelerated_scan.warp \
  --sizes 512,2048,4096,8192,16384 --out $R/bench_scan.json
echo "== done, $(left) s left"
