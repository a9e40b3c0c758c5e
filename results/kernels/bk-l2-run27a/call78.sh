#!/bin/bash
# Run 27a: BK-Core's segment maps walking backward (R) and evict_first stores (S, A) against the landed kernels;
# ncu's DRAM reads of the sweep; the window backward on two streams (27b); on an H200 also the bench rows of the targets.
START=$(date +%s); BUDGET=${BUDGET:-585}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run27a.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-40} $R/$name.txt; }
GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); echo "$GPU" | tee $R/gpu.txt
D=results/kernels/bk-l2-run27a
export PHASEBENCH_GIT_COMMIT=${COMMIT:-unknown} PYTHONPATH=$PWD:$PWD/$D:/tmp/site
step l2 200 python3 $D/bk_l2_run27a.py $R/bk_l2_run27a.json
W=results/kernels/window-streams-run27b
TAILN=8 step win-check 90 python3 $W/window_streams_run27b.py check
step win 200 python3 $W/window_streams_run27b.py $R/window_streams_run27b.json
# the segment maps walking backward as kernels/bk_core/triton.py would land them: its GPU tests (tests/kernels
# alone: tests/conftest.py wants sqlalchemy, which this call does not install)
rm -rf /tmp/rt && mkdir -p /tmp/rt/tests && cp -r kernels bench pyproject.toml /tmp/rt/ && cp -r tests/kernels /tmp/rt/tests/ && (cd /tmp/rt && patch -p1 -s < $OLDPWD/$D/r_integration.patch) \
  && (cd /tmp/rt && TAILN=4 PYTHONPATH=/tmp/rt:/tmp/site step tests-r 240 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py -k "not lookback")
for s in 1,16384,16 8,4096,32 16,2048,16; do TAILN=8 step l2-$s 40 python3 $D/bk_l2_run27a.py $R/bk_l2_$s.json $s; done
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  for t in landed R RS; do
    TAILN=12 step ncu-$t 30 $NCU --cache-control none --target-processes all -k regex:_sweep_kernel -c 3 \
      --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,gpu__time_duration.sum \
      python3 $D/ncu_sweep.py $t
  done
else echo "no ncu" | tee $R/ncu.txt; fi
if echo "$GPU" | grep -q H200; then
  step bench-bk 120 python3 bench/kernels.py --ops bk_core --sizes 16384 --cuda-graph --profile --out $R/bench_bk_graph.json
  step bench-win 200 python3 bench/kernels.py --ops window_attn --sizes 2048,4096,8192,16384 --cuda-graph --skip-anchors score_mod,sdpa --profile --out $R/bench_window.json
fi
echo "== done, $(left) s left"
