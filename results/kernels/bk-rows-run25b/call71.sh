#!/bin/bash
# Run 25b: BK-Core's first passes at 4 and 8 rows a step, one process; the gradient sum; BK-Core GPU tests.
START=$(date +%s); BUDGET=${BUDGET:-400}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run25b.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-14} $R/$name.txt; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
PHASEBENCH_GIT_COMMIT=new PYTHONPATH=$PWD:/tmp/site step rows 200 python3 results/kernels/bk-rows-run25b/bk_rows_run25b.py $R/bk_rows_run25b.json
TAILN=3 step tests-bk 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py
echo "== done, $(left) s left"
