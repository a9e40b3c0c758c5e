#!/bin/bash
# Run 41 (prepared in the thirty-fourth session, any card): BK-Core's adjoint as one full pass and a fix-up of the
# rows whose |Phi| exceeds 2^-30 (bk_fix.py), checked against the landed adjoint and float64 on the GPU, then fwd+bwd
# from CUDA graphs against the landed kernels at the bench's inputs and at BKCore's initial parameters, and the
# kernels' times; then, as the budget allows, run 40's head-128 window tiles (forward first).
# `COMMIT=<tree> bash results/kernels/bk-fix-run41/call96.sh`; output $OUT/run41.tgz (~590 s).
source results/kernels/steps.sh
begin run41 590
D=results/kernels/bk-fix-run41
TAILN=14 step check 120 python3 $D/bk_fix.py check
TAILN=8 step time 200 python3 $D/bk_fix.py time $R/bk_fix.json
TAILN=60 step profile 60 python3 $D/bk_fix.py profile
B="python3 bench/tiles.py --op window_attn --head-dim 128"
TAILN=25 step d128-fwd 200 $B --sizes 2048,16384 --kinds fwd --out $R/tiles_d128_fwd
echo "== done, $(left) s left"
