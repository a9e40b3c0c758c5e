#!/bin/bash
# Run 37 (thirty-second session, any card): the kernels launched directly after the JIT's first launch
# (kernels/launch.py): its tests (the key against Triton's own specialiser, interpreted; direct launches on CUDA),
# every kernel's GPU tests, the eager A/B of every op (launch_ab_run37.py), then the graph-captured and compiled
# model steps (tests/orchestrator/test_execution_gpu.py, test_compile.py on cuda). Carry .gpu-run: .gpu (the
# orchestrator's wheels) without plotly, which the tests do not import and which took the call past 64 MiB.
# `COMMIT=<tree> bash results/kernels/launch-run37/call92.sh`; output $OUT/run37.tgz.
source results/kernels/steps.sh
begin run37 560
bash .gpu-run/install.sh && export PYTHONPATH=/tmp/site:$PYTHONPATH
T="python3 -m pytest -q -p no:cacheprovider"
TAILN=3 step tests-launch-key 40 $T --noconftest tests/kernels/test_launch.py
TAILN=6 step tests-kernels 250 $T --noconftest tests/kernels/test_launch_gpu.py tests/kernels/test_bk_core_gpu.py \
  tests/kernels/test_window_attn_gpu.py tests/kernels/test_linear_attn_gpu.py tests/kernels/test_scan_gpu.py \
  tests/kernels/test_poincare_gpu.py tests/kernels/test_rmsnorm_gpu.py
TAILN=12 step ab 120 python3 results/kernels/launch-run37/launch_ab_run37.py $R/launch_ab_run37.json
TAILN=6 step tests-execution 150 $T -m gpu tests/orchestrator/test_execution_gpu.py tests/orchestrator/test_compile.py
echo "== done, $(left) s left"
