#!/bin/bash
mkdir -p $OUT
PYTHONPATH=$PWD:/tmp/site timeout 150 python3 results/kernels/bk-carry-run26b/bk_carry_run26b.py $OUT/bk_carry_run26b.json 2>&1 | tee $OUT/carry.txt | tail -8
