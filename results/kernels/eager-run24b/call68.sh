#!/bin/bash
# Run 24b, rounds 3-5 of BK-Core and the small ops' eager rows (names without commas).
START=$(date +%s); BUDGET=${BUDGET:-240}
R=$OUT/r; mkdir -p $R
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; grep -E "^(bk_core|window_attn|scan) " $R/$name.txt; }
B="bash $PWD/.gpu/bench_tree.sh"; H=$PWD/.gpu/head
for i in 3 4 5; do
  step new-bk-$i 40 $B $PWD new bk_core 16384 $i
  step head-bk-$i 40 $B $H head bk_core 16384 $i
done
step new-small-2 40 $B $PWD new window_attn,scan 2048 2
step head-small-2 40 $B $H head window_attn,scan 2048 2
echo "== done, $(left) s left"
