#!/bin/bash
# Run 25a: GPU kernel tests (eager path, the recomputing adjoint sweep); BK-Core new vs 49b5371, graph and eager;
# the window against flex_attention at 2K and 4K, 5 repeats.
START=$(date +%s); BUDGET=${BUDGET:-560}
R=$OUT/r; mkdir -p $R
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-6} $R/$name.txt; }
B="bash $PWD/.gpu/bench_args.sh"; H=$PWD/.gpu/head
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
TAILN=4 step tests-bk 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py
for i in 1 2 3; do
  TAILN=3 step new-bkg-$i 45 $B $PWD new new-bkg-$i --ops bk_core --sizes 16384 --cuda-graph --skip-anchors torch_ref --repeats 1
  TAILN=3 step head-bkg-$i 45 $B $H head head-bkg-$i --ops bk_core --sizes 16384 --cuda-graph --skip-anchors torch_ref --repeats 1
done
TAILN=3 step new-bke 45 $B $PWD new new-bke --ops bk_core --sizes 16384 --skip-anchors torch_ref --repeats 3 --profile
TAILN=3 step head-bke 45 $B $H head head-bke --ops bk_core --sizes 16384 --skip-anchors torch_ref --repeats 3 --profile
TAILN=4 step tests-rest 200 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_scan_gpu.py tests/kernels/test_linear_attn_gpu.py tests/kernels/test_poincare_gpu.py tests/kernels/test_rmsnorm_gpu.py tests/kernels/test_window_attn_gpu.py
TAILN=12 step win 150 $B $PWD new win-2k4k --ops window_attn --sizes 2048,4096 --cuda-graph --skip-anchors score_mod,sdpa,torch_ref --repeats 5
echo "== done, $(left) s left"
