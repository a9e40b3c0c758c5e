"""Run 46 (prepared in the thirty-sixth session): the landed halo path against the two-pass kernels alone.

BK-Core fwd+bwd at (16, 16384, 64) through kernels/bk_core/triton.py's own launchers, `_sweep` and `_adjoint`, with
halos (the default, MAX_HALO rows at most) and without (max_halo 0: the two-pass kernels ungated), at the bench's
inputs and BKCore's initial parameters, from CUDA graphs and eager, 3 interleaved rounds, median; GB/s by the 32
bytes an element the problem needs.

    python3 halo_vs_two_pass.py OUT.json
"""

from __future__ import annotations

import math
import os
import statistics
import sys

import torch
import triton
import triton.testing

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "bk-fix-run41"))
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "bk-tile-run44"))

import bk_fix  # noqa: E402
import bk_tile  # noqa: E402
from kernels.bk_core import triton as bk  # noqa: E402

SHAPE = (16, 16384, 64)


def step(args, dgr, dgi, max_halo):
    """One fwd+bwd by the launchers -> dv, grads."""
    g_re, g_im, w = bk._sweep(*args, False, None, max_halo)
    return bk._adjoint(*args, w, g_re, g_im, dgr, dgi, False, None, max_halo)


def main(out: str) -> None:
    rows = {}
    mb = 32 * math.prod(SHAPE) / 1e6  # MB at 32 bytes an element; MB per ms is GB/s
    for kind in ("bench", "model"):
        args = [t.detach() for t in bk_fix.inputs(kind, *SHAPE, "cuda", 0)]
        gen = torch.Generator(device="cpu").manual_seed(1)
        dgr, dgi = (torch.randn(*SHAPE, generator=gen).cuda() for _ in range(2))
        fns = {"two-pass": lambda: step(args, dgr, dgi, 0), "halo": lambda: step(args, dgr, dgi, bk.MAX_HALO)}
        want = fns["two-pass"]()[0]
        diff = ((fns["halo"]()[0] - want).abs().max() / want.abs().max()).item()
        times = {(name, mode): [] for name in fns for mode in ("graph", "eager")}
        for _ in range(3):
            for (name, mode), t in times.items():
                bench = triton.testing.do_bench_cudagraph if mode == "graph" else triton.testing.do_bench
                t.append(bench(fns[name], rep=100))
        for (name, mode), t in times.items():
            med = statistics.median(t)
            rows[f"{kind} {name} {mode}"] = dict(ms=med, rounds=t, gbps_by_32=mb / med, dv_rel_diff=diff)
            print(f"{kind} {name:8s} {mode:5s} {med:.4f} ms  {mb / med:6.0f} GB/s by 32 B  halo dv rel diff {diff:.1e}",
                  flush=True)  # fmt: skip
    bk_tile.write_rows(out, rows, SHAPE)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: halo_vs_two_pass.py OUT.json", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
