#!/bin/bash
# Run 30: BK-Core's parameter-gradient shares laid out for a contiguous reduction (bk_red_run30.py, the bench
# rows), then the BK-Core and window GPU tests. Output: $OUT/run30.tgz.
source results/kernels/steps.sh
begin run30 450
step red 60 python3 results/kernels/bk-red-run30/bk_red_run30.py $R/bk_red_run30.json
TAILN=20 step bench-graph 90 python3 bench/kernels.py --ops bk_core --sizes 16384 --cuda-graph --profile --out $R/bench_bk_graph.json
TAILN=20 step bench-eager 90 python3 bench/kernels.py --ops bk_core --sizes 16384 --out $R/bench_bk_eager.json
TAILN=8 step tests 200 python3 -m pytest --noconftest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py tests/kernels/test_window_attn_gpu.py
echo "== done, $(left) s left"
