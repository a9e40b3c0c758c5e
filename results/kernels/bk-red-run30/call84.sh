#!/bin/bash
# Run 30: BK-Core's parameter-gradient shares laid out for a contiguous reduction (bk_red_run30.py, the bench
# rows, the GPU tests), then run 29b (the window at 2K and 4K in more rounds, call83.sh). Output: $OUT/run30.tgz
# and $OUT/run29b.tgz.
START=$(date +%s); BUDGET=${BUDGET:-540}
R=$OUT/r30; mkdir -p $R
source results/kernels/steps.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $R/gpu.txt
export PHASEBENCH_GIT_COMMIT=${COMMIT:-unknown} PYTHONPATH=$PWD
step red 60 python3 results/kernels/bk-red-run30/bk_red_run30.py $R/bk_red_run30.json
TAILN=20 step bench-graph 90 python3 bench/kernels.py --ops bk_core --sizes 16384 --cuda-graph --profile --out $R/bench_bk_graph.json
TAILN=20 step bench-eager 90 python3 bench/kernels.py --ops bk_core --sizes 16384 --out $R/bench_bk_eager.json
TAILN=8 step tests 200 python3 -m pytest --noconftest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py tests/kernels/test_window_attn_gpu.py
(cd $OUT && tar czf run30.tgz r30 && rm -rf r30)
BUDGET=$(left) bash results/kernels/window-groups-run29/call83.sh
