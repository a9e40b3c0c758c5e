#!/bin/bash
# Run 45 (prepared in the thirty-fifth session, any card): BK-Core with a halo in place of the carry scans
# (bk_halo.py), checked against float64 and the landed kernels (the guards, the fallback), then fwd+bwd from CUDA
# graphs against the landed kernels at (16, 16384, 64), the bench's inputs and BKCore's initial ones, with the
# fraction of segments each halo would flag and the halo step with the empty launches a device-side fallback would
# add (`gated`).
# `COMMIT=<tree> bash results/kernels/bk-halo-run45/call100.sh`; output $OUT/run45.tgz (~330 s).
source results/kernels/steps.sh
begin run45 330
D=results/kernels/bk-halo-run45
TAILN=20 step check 130 python3 $D/bk_halo.py check
TAILN=12 step time 160 python3 $D/bk_halo.py time $R/bk_halo.json
echo "== done, $(left) s left"
