#!/bin/bash
# Run 27a-b, the short call (the session's device time nearly spent): call78.sh's first steps only, the window at 2K
# and 4K.
START=$(date +%s); BUDGET=${BUDGET:-300}
R=$OUT/r; mkdir -p $R
trap 'cd $OUT && tar czf run27.tgz r && rm -rf r' EXIT
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-40} $R/$name.txt; }
GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); echo "$GPU" | tee $R/gpu.txt
D=results/kernels/bk-l2-run27a W=results/kernels/window-streams-run27b
export PHASEBENCH_GIT_COMMIT=${COMMIT:-unknown} PYTHONPATH=$PWD:$PWD/$D:/tmp/site
step l2 150 python3 $D/bk_l2_run27a.py $R/bk_l2_run27a.json
step win 150 python3 $W/window_streams_run27b.py $R/window_streams_run27b.json 2048,4096
rm -rf /tmp/rt && mkdir -p /tmp/rt/tests && cp -r kernels bench pyproject.toml /tmp/rt/ && cp -r tests/kernels /tmp/rt/tests/ && (cd /tmp/rt && patch -p1 -s < $OLDPWD/$D/r_integration.patch) \
  && (cd /tmp/rt && TAILN=4 PYTHONPATH=/tmp/rt:/tmp/site step tests-r 240 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py -k "not lookback")
echo "== done, $(left) s left"
