#!/bin/bash
# Run 40b (thirty-fourth session, any card): the launchers' head-dim-128 choice taken from run 40's sweep, checked
# against the choice before it and timed beside it and flex_attention (verify.py), the window's GPU tests (bf16 at
# head dim 128 among them), then run 41's BK-Core timing (bk_fix.py time) as the budget allows.
# `COMMIT=<tree> bash results/kernels/window-d128-run40/call97.sh`; output $OUT/run40b.tgz (~560 s).
source results/kernels/steps.sh
begin run40b 560
D=results/kernels/window-d128-run40
TAILN=4 step check 120 python3 $D/verify.py check
TAILN=12 step verify 200 python3 $D/verify.py $R/verify.json 2048,16384
TAILN=4 step tests-window 90 python3 -m pytest --noconftest -q -p no:cacheprovider tests/kernels/test_window_attn_gpu.py
TAILN=8 step bk-fix-time 200 python3 results/kernels/bk-fix-run41/bk_fix.py time $R/bk_fix.json
echo "== done, $(left) s left"
