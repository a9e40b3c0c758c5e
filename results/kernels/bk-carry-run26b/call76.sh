#!/bin/bash
mkdir -p $OUT
for s in 1,16384,16 8,4096,32 16,2048,16 16,16384,64; do echo "== $s"; PYTHONPATH=$PWD:/tmp/site timeout 60 python3 results/kernels/bk-carry-run26b/bk_carry_run26b.py $OUT/carry_$(echo $s | tr , x).json $s 2>&1 | grep -v Warn | grep -v warn_once | tee -a $OUT/carry_shapes.txt; done
