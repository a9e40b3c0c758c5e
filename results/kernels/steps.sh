# Sourced by the device calls' scripts: `step NAME CAP CMD...` runs CMD with a time cap, its output to $R/NAME.txt
# (its exit code appended) and the last $TAILN lines (40) to the call's output, skipping it when under 15 of the
# call's $BUDGET seconds (counted from $START) are left; `left` prints the seconds left.
left(){ echo $(( BUDGET - ($(date +%s) - START) )); }
step(){ local name=$1 cap=$2; shift 2; local l=$(left); [ "$l" -lt 15 ] && { echo "skip $name"; return; }
  [ "$cap" -gt $((l-3)) ] && cap=$((l-3))
  echo "== $name (cap $cap)"; timeout $cap "$@" > $R/$name.txt 2>&1; echo "rc=$?" >> $R/$name.txt; tail -${TAILN:-40} $R/$name.txt; }
# `begin NAME BUDGET` opens a call: its clock ($START), its budget ($BUDGET, unless set already), $R under $OUT
# packed into $OUT/NAME.tgz on exit, the card's name in $R/gpu.txt, and the commit and PYTHONPATH its scripts read.
begin(){ START=$(date +%s); BUDGET=${BUDGET:-$2}; R=$OUT/r; mkdir -p $R
  trap "cd $OUT && tar czf $1.tgz r && rm -rf r" EXIT
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $R/gpu.txt
  export PHASEBENCH_GIT_COMMIT=${COMMIT:-unknown} PYTHONPATH=$PWD; }
