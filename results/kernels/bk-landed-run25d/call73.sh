#!/bin/bash
# Run 25d: the landed BK-Core tree: GPU tests, and its bench row from CUDA graphs.
START=$(date +%s); BUDGET=${BUDGET:-240}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run25d.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-8} $R/$name.txt; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
TAILN=3 step tests-bk 185 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py
step bench 50 bash $PWD/.gpu/bench_args.sh $PWD landed bench-bk --ops bk_core --sizes 16384 --cuda-graph --repeats 3
echo "== done, $(left) s left"
