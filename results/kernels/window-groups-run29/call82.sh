#!/bin/bash
# Run 29: the window GPU tests on the landed groups, fwd+bwd with one group / the landed groups / flex_attention,
# then the window bench rows. Output: $OUT/run29.tgz.
source results/kernels/steps.sh
begin run29 480
TAILN=8 step tests 150 python3 -m pytest --noconftest -q -p no:cacheprovider tests/kernels/test_window_attn_gpu.py
step groups 220 python3 results/kernels/window-groups-run29/window_groups_run29.py $R/window_groups_run29.json
TAILN=30 step bench-win 200 python3 bench/kernels.py --ops window_attn --sizes 2048,4096,8192,16384 --cuda-graph --skip-anchors score_mod,sdpa --profile --out $R/bench_window.json
echo "== done, $(left) s left"
