#!/bin/bash
# Run 37b (thirty-second session): the GPU tests run 37 (call92.sh) did not reach before its caps: the scan's,
# the Poincare maps' and RMSNorm's kernel tests, and test_compile.py's phase7 and phase8 blocks on cuda. Carry
# .gpu-run as for call92.sh. `COMMIT=<tree> bash results/kernels/launch-run37/call93.sh`; output $OUT/run37b.tgz.
source results/kernels/steps.sh
begin run37b 200
bash .gpu-run/install.sh && export PYTHONPATH=/tmp/site:$PYTHONPATH
T="python3 -m pytest -q -p no:cacheprovider -rA"
TAILN=6 step tests-kernels 90 $T --noconftest tests/kernels/test_scan_gpu.py tests/kernels/test_poincare_gpu.py \
  tests/kernels/test_rmsnorm_gpu.py
TAILN=6 step tests-compile 90 $T -m gpu tests/orchestrator/test_compile.py -k "phase7-cuda or phase8-cuda"
echo "== done, $(left) s left"
