#!/bin/bash
# Runs 39 and 37b/38 (thirty-third session, any card): the launch path's tests on CUDA (the key by value, the
# compiled kernel's launcher called directly, a launch hook), run 39's four-way host A/B (launch_ab_run39.py), the
# GPU tests run 37 did not reach (the scan's, the Poincare maps' and RMSNorm's kernel tests, test_compile.py's
# phase7 and phase8 blocks on cuda), then run 38 (the window's identity-product reload at head dim 128,
# window-rows-run38/). Carry .gpu-run.
# `COMMIT=<tree> bash results/kernels/launch-run39/call94.sh`; output $OUT/run39.tgz (~560 s).
source results/kernels/steps.sh
begin run39 570
bash .gpu-run/install.sh && export PYTHONPATH=/tmp/site:$PYTHONPATH
T="python3 -m pytest -q -p no:cacheprovider -rA"
TAILN=3 step tests-launch-key 40 $T --noconftest tests/kernels/test_launch.py
TAILN=6 step tests-launch 120 $T --noconftest tests/kernels/test_launch_gpu.py tests/kernels/test_bk_core_gpu.py
TAILN=12 step ab 150 python3 results/kernels/launch-run39/launch_ab_run39.py $R/launch_ab_run39.json
TAILN=6 step tests-kernels 90 $T --noconftest tests/kernels/test_scan_gpu.py tests/kernels/test_poincare_gpu.py \
  tests/kernels/test_rmsnorm_gpu.py
S=results/kernels/window-rows-run38/window_rows_run38.py
TAILN=3 step rows128-check 50 python3 $S check
TAILN=3 step rows128 90 python3 $S $R/window_rows_run38.json 2048,16384
TAILN=6 step tests-compile 90 $T -m gpu tests/orchestrator/test_compile.py -k "phase7-cuda or phase8-cuda"
echo "== done, $(left) s left"
