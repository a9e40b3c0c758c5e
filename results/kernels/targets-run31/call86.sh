#!/bin/bash
# Picks this session's first call by the card it got: the targets' rows (call85.sh, run 31) on an H200, else
# run 30 (call84.sh) on an H100.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash results/kernels/targets-run31/call85.sh
else
  bash results/kernels/bk-red-run30/call84.sh
fi
