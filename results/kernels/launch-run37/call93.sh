#!/bin/bash
# Runs 37b and 38 (prepared in the thirty-second session): the GPU tests run 37 (call92.sh) did not reach before
# its caps (the scan's, the Poincare maps' and RMSNorm's kernel tests, test_compile.py's phase7 and phase8 blocks on
# cuda), then run 38: the window's identity-product reload at head dim 128 against the plain one it keeps there
# (window-rows-run38/). Carry .gpu-run as for call92.sh.
# `COMMIT=<tree> bash results/kernels/launch-run37/call93.sh`; output $OUT/run37b.tgz (~340 s).
source results/kernels/steps.sh
begin run37b 340
bash .gpu-run/install.sh && export PYTHONPATH=/tmp/site:$PYTHONPATH
T="python3 -m pytest -q -p no:cacheprovider -rA"
TAILN=6 step tests-kernels 90 $T --noconftest tests/kernels/test_scan_gpu.py tests/kernels/test_poincare_gpu.py \
  tests/kernels/test_rmsnorm_gpu.py
TAILN=6 step tests-compile 90 $T -m gpu tests/orchestrator/test_compile.py -k "phase7-cuda or phase8-cuda"
S=results/kernels/window-rows-run38/window_rows_run38.py
TAILN=3 step rows128-check 60 python3 $S check
TAILN=3 step rows128 100 python3 $S $R/window_rows_run38.json 2048,16384
echo "== done, $(left) s left"
