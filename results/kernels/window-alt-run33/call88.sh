#!/bin/bash
# Run 33: the window backward's alternating schedule with 1, 2 (landed), 3, 4 and 8 groups (window_alt_run33.py):
# its bit-for-bit check, then its timings at 2K and 4K twice, each in a process of its own; then the window GPU
# tests (the tree of ed6af46 moved the side stream's creation). Output: $OUT/run33.tgz.
source results/kernels/steps.sh
begin run33 360
S=results/kernels/window-alt-run33/window_alt_run33.py
TAILN=10 step check 60 python3 $S check
for i in 1 2; do TAILN=4 step alt$i 90 python3 $S $R/window_alt_run33_$i.json 2048,4096; done
TAILN=4 step tests-window 90 python3 -m pytest --noconftest -q -p no:cacheprovider tests/kernels/test_window_attn_gpu.py
echo "== done, $(left) s left"
