#!/bin/bash
# Run 29b: the window at 2K and 4K again, in more rounds, with the backward's groups under other schedules
# (window_pipe_run29b.py: its bit-for-bit check, then its timings twice) and the bench rows twice, each in a
# process of its own. Output: $OUT/run29b.tgz.
source results/kernels/steps.sh
begin run29b 330
S=results/kernels/window-groups-run29/window_pipe_run29b.py
TAILN=10 step check 60 python3 $S check
for i in 1 2; do step pipe$i 80 python3 $S $R/window_pipe_run29b_$i.json 2048,4096; done
for i in 1 2; do TAILN=12 step bench$i 70 python3 bench/kernels.py --ops window_attn --sizes 2048,4096 --cuda-graph --skip-anchors score_mod,sdpa --out $R/bench_window_$i.json; done
echo "== done, $(left) s left"
