#!/bin/bash
# Run 40 (prepared in the thirty-third session, any card): the window's tiles and launches at head dim 128, never
# timed (run 38: fwd+bwd at (8, 16, N, 128) bf16 is 2.85x flex_attention's time, against 0.94-0.99x at head dim
# 64). bench/tiles.py times every forward choice, then the backward with each kernel's tiles and launch varied,
# from CUDA graphs at 2K and 16K; the launchers' current choice at 128 is 32 x 32, 8 warps, 2 stages everywhere.
# `COMMIT=<tree> bash results/kernels/window-d128-run40/call95.sh`; output $OUT/run40.tgz (~560 s).
source results/kernels/steps.sh
begin run40 570
B="python3 bench/tiles.py --op window_attn --head-dim 128"
TAILN=25 step fwd 200 $B --sizes 2048,16384 --kinds fwd --out $R/tiles_d128_fwd
TAILN=40 step bwd 340 $B --sizes 2048,16384 --kinds split_dkdv,split_dq --out $R/tiles_d128_bwd
echo "== done, $(left) s left"
