#!/bin/bash
# Run 26a: the pipelined BK-Core forward against the landed three launches.
START=$(date +%s); BUDGET=${BUDGET:-400}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run26a.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-40} $R/$name.txt; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
PHASEBENCH_GIT_COMMIT=new PYTHONPATH=$PWD:/tmp/site step pipe 240 python3 results/kernels/bk-pipe-run26a/bk_pipe_run26a.py $R/bk_pipe_run26a.json
TAILN=6 step tests-pipe 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py -k pipeline
echo "== done, $(left) s left"
