#!/bin/bash
# Run 35: the window backward's epilogue rows through the identity product (thirty-first session), first timed:
# its gradients against the plain reload's, both (and the dq kernel's register cap at 184 and none) timed at 2K-16K
# with flex_attention beside (2K again in a second process), the targets' bench rows with a per-kernel profile,
# then the window GPU tests. `COMMIT=<tree> bash results/kernels/window-rows-run35/call90.sh`; output:
# $OUT/run35.tgz (~540 s).
source results/kernels/steps.sh
begin run35 540
S=results/kernels/window-rows-run35/window_rows_run35.py
TAILN=9 step check 60 python3 $S check
TAILN=6 step ab 200 python3 $S $R/window_rows_run35.json 2048,4096,8192,16384
TAILN=3 step ab2k 60 python3 $S $R/window_rows_run35_2k.json 2048
TAILN=20 step bench 110 python3 bench/kernels.py --ops window_attn --sizes 2048,16384 --cuda-graph --profile \
  --skip-anchors score_mod,sdpa --out $R/bench_window.json
TAILN=4 step tests-window 90 python3 -m pytest --noconftest -q -p no:cacheprovider tests/kernels/test_window_attn_gpu.py
echo "== done, $(left) s left"
