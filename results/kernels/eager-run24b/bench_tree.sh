#!/bin/bash
# bench_tree.sh TREE TAG OPS SIZES I: bench/kernels.py eager rows from TREE, ours only
tree=$1 tag=$2 ops=$3 sizes=$4 i=$5
cd $tree && PHASEBENCH_GIT_COMMIT=$tag PYTHONPATH=$tree:/tmp/site python3 bench/kernels.py --ops $ops --sizes $sizes \
  --skip-anchors torch_ref,fla,flex,accelerated,sdpa,score_mod --out $OUT/r/$tag-${ops//,/+}-$sizes-$i.json
