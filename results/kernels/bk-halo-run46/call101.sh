#!/bin/bash
# Run 46 (prepared in the thirty-sixth session, any card): the landed halo path on a GPU. The BK-Core GPU tests
# (the halo fallback in both directions and inside a CUDA graph among them), the halo path against the two-pass
# kernels alone (halo_vs_two_pass.py: graphs and eager, the bench's inputs and BKCore's), then the bench's BK-Core
# target rows (graph, profiled; eager). `COMMIT=<tree> bash results/kernels/bk-halo-run46/call101.sh`;
# output $OUT/run46.tgz (~400 s).
source results/kernels/steps.sh
begin run46 400
D=results/kernels/bk-halo-run46
T="python3 -m pytest --noconftest -q -p no:cacheprovider"
TAILN=6 step tests-bk 170 $T tests/kernels/test_bk_core_gpu.py
TAILN=8 step halo 90 python3 $D/halo_vs_two_pass.py $R/halo_vs_two_pass.json
K="python3 bench/kernels.py"
TAILN=12 step bk-graph 60 $K --ops bk_core --sizes 16384 --cuda-graph --profile --out $R/bench_bk_graph.json
TAILN=12 step bk-eager 60 $K --ops bk_core --sizes 16384 --out $R/bench_bk_eager.json
echo "== done, $(left) s left"
