#!/bin/bash
# Run 25a (again, files packed): BK-Core new vs 49b5371, graph and eager (profile); GPU tests of BK-Core;
# the window against flex_attention at 4K, 5 repeats.
START=$(date +%s); BUDGET=${BUDGET:-560}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run25a.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; grep -E "${PAT:-^(bk_core|window_attn) }" $R/$name.txt | tail -${TAILN:-6}; tail -1 $R/$name.txt; }
B="bash $PWD/.gpu/bench_args.sh"; H=$PWD/.gpu/head
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for i in 1 2 3; do
  step new-bkg-$i 45 $B $PWD new new-bkg-$i --ops bk_core --sizes 16384 --cuda-graph --repeats 1
  step head-bkg-$i 45 $B $H head head-bkg-$i --ops bk_core --sizes 16384 --cuda-graph --repeats 1
done
step new-bke 45 $B $PWD new new-bke --ops bk_core --sizes 16384 --repeats 3 --profile
step head-bke 45 $B $H head head-bke --ops bk_core --sizes 16384 --repeats 3 --profile
PAT="passed|failed" step tests-bk 240 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py
TAILN=12 step win 110 $B $PWD new win-4k --ops window_attn --sizes 4096 --cuda-graph --skip-anchors score_mod,sdpa --repeats 5
echo "== done, $(left) s left"
