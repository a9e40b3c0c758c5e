#!/bin/bash
# Run 44 (prepared in the thirty-fifth session, any card): BK-Core's forward in one pass with programs that scan
# their segment in parallel and hold it in registers (bk_tile.py), checked against float64 and the landed forward,
# then timed from CUDA graphs beside the landed forward and the look-back forward at (16, 16384, 64); then run 44b,
# the window's kernels at head dim 128 beside flex_attention's (window-d128-run40/verify.py profile).
# `COMMIT=<tree> bash results/kernels/bk-tile-run44/call99.sh`; output $OUT/run44.tgz (~300 s).
source results/kernels/steps.sh
begin run44 300
D=results/kernels/bk-tile-run44
TAILN=16 step check 80 python3 $D/bk_tile.py check
TAILN=10 step time 100 python3 $D/bk_tile.py time $R/bk_tile.json
TAILN=40 step d128-profile 100 python3 results/kernels/window-d128-run40/verify.py profile
echo "== done, $(left) s left"
