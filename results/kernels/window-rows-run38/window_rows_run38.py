"""Run 38 (prepared in the thirty-second session): the window backward's identity-product reload at head dim 128,
where `_rows_by_dot` keeps the plain reload. Compiled for sm_90 with triton 3.6 (the GPUs' version) at bf16, head
dim 128, aligned, the identity product took the dk/dv kernel from 2,744 SASS instructions to 2,536 and 65 barriers
to 47, the dq kernel from 2,856 to 2,664 and 93 barriers to 68, with no spill either way; triton 3.9 spilled 144
and 24 bytes with it, which is why head dim 128 kept the plain reload (`counts128.txt` beside this file). Timed
here: fwd+bwd from CUDA graphs at (8, 16, N, 128) bf16, window 64, both reloads, flex_attention beside, 3
interleaved rounds, median (run 29's timers), and the gradients of both.

    python3 window_rows_run38.py check
    python3 window_rows_run38.py OUT.json [N,...]
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

D = 128
LANDED = "plain reload (landed at head dim 128)"
VARIANTS = {LANDED: W._rows_by_dot, "identity product": lambda BD, BDV, fp32: True}


@contextlib.contextmanager
def variant(name):
    with swapped(W, "_rows_by_dot", VARIANTS[name]):
        yield


def check():
    for n in (2048, 1000):
        ins = inputs(n, D=D)
        fn = functools.partial(W.window_hyp_attn_triton, *ins, 64)
        found = {}
        for name in VARIANTS:
            with variant(name):
                found[name] = grads(ins, fn)
        pairs = list(zip(found["identity product"], found[LANDED], strict=True))
        same = [torch.equal(a, b) for a, b in pairs]
        rel = [f"{((a.float() - b.float()).norm() / b.float().norm()).item():.1e}" for a, b in pairs]
        print(f"N {n}: identity product's q, k, v, c, scale gradients identical to the plain reload's {same}, "
              f"relative {rel}")  # fmt: skip


def main(argv):
    if argv[1] == "check":
        check()
        return
    rows = {}
    for n in [int(x) for x in argv[2].split(",")] if len(argv) > 2 else [2048, 16384]:
        ins = inputs(n, D=D)
        flex_fn, flex_ins = window_flex_anchors(*ins, 64)[FLEX_DOT]
        ours = _fwd_bwd(functools.partial(W.window_hyp_attn_triton, *ins, 64), ins)
        timers = {"flex_attention": (_fwd_bwd(flex_fn, flex_ins), functools.partial(variant, LANDED))}
        timers |= {name: (ours, functools.partial(variant, name)) for name in VARIANTS}
        report(rows, n, interleaved(timers))
    write(argv[1], rows)


if __name__ == "__main__":
    main(sys.argv)
