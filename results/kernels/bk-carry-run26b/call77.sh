#!/bin/bash
mkdir -p $OUT
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 170 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_bk_core_gpu.py -k "not lookback" 2>&1 | tail -3 | tee $OUT/tests-bk.txt
