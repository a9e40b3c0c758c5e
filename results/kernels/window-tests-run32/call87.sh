#!/bin/bash
# Run 32: the window's GPU tests on the landed tree alone, with their durations (run 30 cut them at its 200 s cap
# after the first); then, as time allows, run 29b's schedules (window_pipe_run29b.py: the bit-for-bit check, the
# timings once) and the window's bench rows at 2K and 4K. Output: $OUT/run32.tgz.
source results/kernels/steps.sh
begin run32 300
S=results/kernels/window-groups-run29/window_pipe_run29b.py
TAILN=14 step tests 130 python3 -m pytest --noconftest -v -p no:cacheprovider --durations=0 tests/kernels/test_window_attn_gpu.py
TAILN=10 step check 60 python3 $S check
TAILN=12 step pipe 80 python3 $S $R/window_pipe_run29b.json 2048,4096
TAILN=10 step bench 70 python3 bench/kernels.py --ops window_attn --sizes 2048,4096 --cuda-graph \
  --skip-anchors score_mod,sdpa --out $R/bench_window.json
echo "== done, $(left) s left"
