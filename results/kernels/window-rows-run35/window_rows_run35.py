"""Run 35 (prepared in the thirty-first session): the window backward's epilogues reloading their x, q and k rows
through the identity product (kernels/window_attn/triton.py _reload_rows, _rows_by_dot) against the plain reload
before it, fwd+bwd from CUDA graphs at (8, 16, N, 64) bf16, window 64, flex_attention (dot-product, same window)
beside, 3 interleaved rounds, median (run 29's timers). Compiled for sm_90 on the CPU VM (triton 3.6) the identity
product took the dq kernel from 4,088 SASS instructions to 3,632 and the dk/dv kernel from 3,184 to 2,832. The dq
kernel's register cap is timed again beside it (184, and none).

    python3 window_rows_run35.py check            # every variant's gradients against the plain reload's (GPU):
                                                  # the tiles are the same; row sums in the dots' layout may round
                                                  # in another order
    python3 window_rows_run35.py OUT.json [N,...]
"""

import contextlib
import functools
import os
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "window-groups-run29"))
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "window-streams-run27b"))
from window_groups_run29 import interleaved, report, write  # noqa: E402
from window_streams_run27b import grads, inputs  # noqa: E402

from bench.kernels import FLEX_DOT, _fwd_bwd, window_flex_anchors  # noqa: E402
from bench.tiles import swapped  # noqa: E402
from kernels.window_attn import triton as W  # noqa: E402

LANDED = "identity product (landed)"
#: name -> (the launcher's choice of reload, the dq kernel's register cap): the landed cap of 168 was timed with the
#: plain reload (run 18c, 20b), which spilled 192 bytes under it on triton 3.6; the identity product spills 176
VARIANTS = {
    "plain reload": (lambda BD, BDV, fp32: False, W.DQ_MAXNREG),
    LANDED: (W._rows_by_dot, W.DQ_MAXNREG),
    "identity product, dq cap 184": (W._rows_by_dot, 184),
    "identity product, dq uncapped": (W._rows_by_dot, 255),
}


@contextlib.contextmanager
def variant(name):
    """variants[name] swapped into the launcher while its kernels compile and run."""
    rows_by_dot, cap = VARIANTS[name]
    with swapped(W, "_rows_by_dot", rows_by_dot), swapped(W, "DQ_MAXNREG", cap):
        yield


def check():
    for n in (2048, 1000):
        ins = inputs(n)
        fn = functools.partial(W.window_hyp_attn_triton, *ins, 64)
        found = {}
        for name in VARIANTS:
            with variant(name):
                found[name] = grads(ins, fn)
        for name, got in found.items():
            base = found["plain reload"]
            pairs = list(zip(got, base, strict=True))
            same = [torch.equal(a, b) for a, b in pairs]
            rel = [f"{((a.float() - b.float()).norm() / b.float().norm()).item():.1e}" for a, b in pairs]
            print(f"N {n} {name}: q, k, v, c, scale gradients identical to the plain reload's {same}, relative {rel}")


def main(argv):
    if argv[1] == "check":
        check()
        return
    rows = {}
    for n in [int(x) for x in argv[2].split(",")] if len(argv) > 2 else [2048, 4096, 8192, 16384]:
        ins = inputs(n)
        flex_fn, flex_ins = window_flex_anchors(*ins, 64)[FLEX_DOT]
        ours = _fwd_bwd(functools.partial(W.window_hyp_attn_triton, *ins, 64), ins)
        timers = {"flex_attention": (_fwd_bwd(flex_fn, flex_ins), functools.partial(variant, LANDED))}
        timers |= {name: (ours, functools.partial(variant, name)) for name in VARIANTS}
        report(rows, n, interleaved(timers))
    write(argv[1], rows)


if __name__ == "__main__":
    main(sys.argv)
