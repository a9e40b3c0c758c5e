#!/bin/bash
# Run 27a-b and 28: BK-Core's backward-walking segment maps (27a), the window backward in one kernel scoring each
# pair once (28), the window backward on two streams (27b). Output: $OUT/run28.tgz.
START=$(date +%s); BUDGET=${BUDGET:-570}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run28.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-40} $R/$name.txt; }
GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); echo "$GPU" | tee $R/gpu.txt
D=results/kernels/bk-l2-run27a F=results/kernels/window-fused-run28 W=results/kernels/window-streams-run27b
export PHASEBENCH_GIT_COMMIT=${COMMIT:-unknown} PYTHONPATH=$PWD:$PWD/$D:/tmp/site
step fused 200 python3 $F/window_fused_run28.py $R/window_fused_run28.json 2048,16384 ${STRIPS:-4,8}
rm -rf /tmp/wt && mkdir -p /tmp/wt/tests && cp -r kernels bench pyproject.toml /tmp/wt/ && cp -r tests/kernels /tmp/wt/tests/ && (cd /tmp/wt && patch -p1 -s < $OLDPWD/$F/fused_integration.patch) \
  && (cd /tmp/wt && TAILN=6 PYTHONPATH=/tmp/wt:/tmp/site step tests-fused 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_window_attn_gpu.py tests/kernels/test_custom_op.py)
TAILN=12 step fused-check 90 python3 $F/window_fused_run28.py check
step l2 120 python3 $D/bk_l2_run27a.py $R/bk_l2_run27a.json
rm -rf /tmp/rt && mkdir -p /tmp/rt/tests && cp -r kernels bench pyproject.toml /tmp/rt/ && cp -r tests/kernels /tmp/rt/tests/ && (cd /tmp/rt && patch -p1 -s < $OLDPWD/$D/r_integration.patch) \
  && (cd /tmp/rt && TAILN=4 PYTHONPATH=/tmp/rt:/tmp/site step tests-r 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py -k "not lookback")
FUSED_MAXNREG=168 TAILN=6 step fused-cap168 80 python3 $F/window_fused_run28.py $R/window_fused_run28_cap168.json 2048,16384 8
step win 120 python3 $W/window_streams_run27b.py $R/window_streams_run27b.json 2048,4096
if echo "$GPU" | grep -q H200; then  # the targets' card: their bench rows, as call78.sh
  step bench-bk 120 python3 bench/kernels.py --ops bk_core --sizes 16384 --cuda-graph --profile --out $R/bench_bk_graph.json
  step bench-win 200 python3 bench/kernels.py --ops window_attn --sizes 2048,4096,8192,16384 --cuda-graph --skip-anchors score_mod,sdpa --profile --out $R/bench_window.json
fi
echo "== done, $(left) s left"
