#!/bin/bash
# Run 28, the short call (the session's device time nearly spent): the fused backwards' timing at strips of 8 (2K,
# 16K) and the window GPU tests on the patched tree. Output: $OUT/run28s.tgz.
START=$(date +%s); BUDGET=${BUDGET:-400}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run28s.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-40} $R/$name.txt; }
GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); echo "$GPU" | tee $R/gpu.txt
F=results/kernels/window-fused-run28
export PHASEBENCH_GIT_COMMIT=${COMMIT:-unknown} PYTHONPATH=$PWD:/tmp/site
step fused 210 python3 $F/window_fused_run28.py $R/window_fused_run28.json 2048,16384 8
rm -rf /tmp/wt && mkdir -p /tmp/wt/tests && cp -r kernels bench pyproject.toml /tmp/wt/ && cp -r tests/kernels /tmp/wt/tests/ && (cd /tmp/wt && patch -p1 -s < $OLDPWD/$F/fused_integration.patch) \
  && (cd /tmp/wt && TAILN=6 PYTHONPATH=/tmp/wt:/tmp/site step tests-fused 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_window_attn_gpu.py)
TAILN=12 step fused-check 60 python3 $F/window_fused_run28.py check
echo "== done, $(left) s left"
