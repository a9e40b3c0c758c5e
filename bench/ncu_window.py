"""One fwd+bwd of our window attention and one of flex_attention (dot-product scores, same window), between
cudaProfilerStart and cudaProfilerStop after three warm-up steps, for Nsight Compute:

    ncu --profile-from-start off --clock-control none --section SpeedOfLight --section Occupancy \
        --section WarpStateStats --section ComputeWorkloadAnalysis --section LaunchStats \
        --section InstructionStats --section SchedulerStats --csv --page details \
        python3 bench/ncu_window.py 4096 > ncu.csv

Shape (8, 16, N, 64) bf16, window 64, as `kernels.py --ops window_attn` (its `case_window_attn`). Prints nothing
but "done": the figures are ncu's (instructions, occupancy, issue slots per kernel). CUDA only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench.kernels as bk  # noqa: E402


def step(fn) -> None:
    """One forward and backward of fn() -> o."""
    o = fn()
    o.backward(torch.ones_like(o))


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description="One window-attention fwd+bwd and one of flex_attention, for ncu.")
    p.add_argument("n", type=int, nargs="?", default=4096, help="sequence length N (default 4096)")
    n = p.parse_args(argv).n
    if n < 1:
        p.error(f"n: {n} is not a sequence length (>= 1)")
    if not torch.cuda.is_available():
        p.error("needs a CUDA device: it profiles GPU kernels under ncu")
    bk.SKIP_ANCHORS = frozenset({"score_mod", "sdpa"})
    _shape, impls, anchors, *_ = bk.case_window_attn(n, "cuda", torch.bfloat16, False)
    ours, flex = impls["triton"], anchors[bk.FLEX_DOT][0]
    for _ in range(3):
        step(ours)
        step(flex)
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    step(ours)
    step(flex)
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    print("done")


if __name__ == "__main__":
    main(sys.argv[1:])
