#!/bin/bash
# Run 34: the targets' bench rows for the window (every N) and BK-Core (graph, profiled; eager), and the window at
# 2K once more, on the machine run 33 had just used. As run, in two calls (the second after the first's 141 s);
# outputs $OUT/run34.tgz and $OUT/run34b.tgz, unpacked into h100/.
mkdir -p $OUT/r; export PYTHONPATH=$PWD PHASEBENCH_GIT_COMMIT=${COMMIT:-unknown}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/r/gpu.txt
timeout 150 python3 bench/kernels.py --ops window_attn --sizes 2048,4096,8192,16384 --cuda-graph \
  --skip-anchors score_mod,sdpa --out $OUT/r/bench_window.json > $OUT/r/window.txt 2>&1
timeout 90 python3 bench/kernels.py --ops bk_core --sizes 16384 --cuda-graph --profile \
  --out $OUT/r/bench_bk_graph.json > $OUT/r/bk.txt 2>&1
(cd $OUT && tar czf run34.tgz r && rm -rf r)
# the second call
mkdir -p $OUT/r
timeout 80 python3 bench/kernels.py --ops bk_core --sizes 16384 --out $OUT/r/bench_bk_eager.json > $OUT/r/bk_eager.txt 2>&1
timeout 70 python3 bench/kernels.py --ops window_attn --sizes 2048 --cuda-graph --skip-anchors score_mod,sdpa,torch_ref \
  --out $OUT/r/bench_window_2k.json > $OUT/r/window_2k.txt 2>&1
(cd $OUT && tar czf run34b.tgz r && rm -rf r)
