#!/bin/bash
# bench_args.sh TREE TAG NAME ARGS...: bench/kernels.py from TREE with ARGS, JSON to $OUT/r/NAME.json
tree=$1 tag=$2 name=$3; shift 3
cd $tree && PHASEBENCH_GIT_COMMIT=$tag PYTHONPATH=$tree:/tmp/site python3 bench/kernels.py "$@" --out $OUT/r/$name.json
