#!/bin/bash
# Run 29b: the window at 2K and 4K again, in more rounds: run 29's script three times and the bench rows twice,
# each in a process of its own. Output: $OUT/run29b.tgz.
START=$(date +%s); BUDGET=${BUDGET:-240}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run29b.tgz r && rm -rf r' EXIT
source results/kernels/steps.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $R/gpu.txt
export PHASEBENCH_GIT_COMMIT=${COMMIT:-unknown} PYTHONPATH=$PWD
S=results/kernels/window-groups-run29/window_groups_run29.py
for i in 1 2 3; do step groups$i 40 python3 $S $R/window_groups_run29b_$i.json 8:2048,8:4096; done
for i in 1 2; do TAILN=12 step bench$i 70 python3 bench/kernels.py --ops window_attn --sizes 2048,4096 --cuda-graph --skip-anchors score_mod,sdpa --out $R/bench_window_$i.json; done
echo "== done, $(left) s left"
