#!/bin/bash
# Run 25c: BK-Core's prefetching loops (maps, sweep, first adjoint pass), one process; BK-Core GPU tests.
START=$(date +%s); BUDGET=${BUDGET:-330}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run25c.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-24} $R/$name.txt; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
PHASEBENCH_GIT_COMMIT=new PYTHONPATH=$PWD:/tmp/site step prefetch 170 python3 results/kernels/bk-prefetch-run25c/bk_prefetch_run25c.py $R/bk_prefetch_run25c.json
TAILN=3 step tests-bk 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py
echo "== done, $(left) s left"
