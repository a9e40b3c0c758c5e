#!/bin/bash
# Run 24b: eager rows, this tree (differentiable_op) against .gpu/head (96268de, the custom ops), interleaved.
START=$(date +%s); BUDGET=${BUDGET:-300}
R=$OUT/r; mkdir -p $R
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-25} $R/$name.txt; }
B="bash $PWD/.gpu/bench_tree.sh"; H=$PWD/.gpu/head
TAILN=8 step new-bk-1 60 $B $PWD new bk_core 16384 1
TAILN=8 step head-bk-1 60 $B $H head bk_core 16384 1
TAILN=14 step new-small-1 50 $B $PWD new window_attn,scan,linear_attn 2048 1
TAILN=14 step head-small-1 50 $B $H head window_attn,scan,linear_attn 2048 1
TAILN=8 step new-bk-2 50 $B $PWD new bk_core 16384 2
TAILN=8 step head-bk-2 50 $B $H head bk_core 16384 2
echo "== done, $(left) s left"
