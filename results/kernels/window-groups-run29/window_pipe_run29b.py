"""Run 29b: the window backward's groups under two schedules, fwd+bwd from CUDA graphs at (8, 16, N, 64) bf16,
window 64, flex_attention (dot-product, same window) beside, 3 interleaved rounds, median.

- alternating (landed, kernels/window_attn/triton.py _run_groups): group g's dq then dk/dv kernel on the current
  stream (even g) or the side stream (odd g); both groups' dq kernels start together.
- pipelined: every dq kernel on the current stream, every dk/dv kernel on the side stream, each waiting on an
  event after its group's dq kernel: group g's dk/dv runs beside group g + 1's dq, and only the last group's
  dk/dv kernel runs alone at the end (a 1/G share of the work).

    python3 window_pipe_run29b.py check            # every schedule against one group, bit for bit (GPU)
    python3 window_pipe_run29b.py OUT.json [N,...]
"""

import contextlib
import functools
import os
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "window-streams-run27b"))
from window_groups_run29 import interleaved, report, write  # noqa: E402
from window_streams_run27b import grads, inputs  # noqa: E402

from bench.kernels import FLEX_DOT, _fwd_bwd, window_flex_anchors  # noqa: E402
from bench.tiles import swapped  # noqa: E402
from kernels.window_attn import triton as W  # noqa: E402

landed = W._run_groups


def pipelined(device, groups):
    """Every dq launch on the current stream; each dk/dv launch on the side stream after its group's dq."""
    main, side = torch.cuda.current_stream(device), W._side_stream(device)
    for dq_launch, dkdv_launch in groups:
        dq_launch()
        done = torch.cuda.Event()
        done.record(main)
        side.wait_event(done)
        with torch.cuda.stream(side):
            dkdv_launch()
    main.wait_stream(side)


#: name -> (schedule, groups)
VARIANTS = {
    "one group": (landed, 1),
    "alternating 2": (landed, 2),
    "pipelined 2": (pipelined, 2),
    "pipelined 4": (pipelined, 4),
    "pipelined 8": (pipelined, 8),
}


@contextlib.contextmanager
def variant(name, variants=VARIANTS):
    """The schedule and group count of variants[name] swapped in, eager calls grouped too."""
    schedule, count = variants[name]
    with swapped(W, "_run_groups", schedule), swapped(W, "BWD_GROUPS", count):
        with swapped(W, "_grouped", lambda device: True):
            yield


def main(argv, variants=VARIANTS):
    """`check`: every variant's outputs and gradients against one group's; else time them into argv[1]."""
    if argv[1] == "check":
        for n in (2048, 1000):
            ins = inputs(n)
            fn = functools.partial(W.window_hyp_attn_triton, *ins, 64)
            with variant("one group", variants):
                ref = grads(ins, fn)
            for name in variants:
                with variant(name, variants):
                    out = grads(ins, fn)
                print(f"N {n} {name}: identical {[torch.equal(a, b) for a, b in zip(ref, out, strict=True)]}")
        return
    sizes = [int(x) for x in argv[2].split(",")] if len(argv) > 2 else [2048, 4096]
    rows = {}
    for n in sizes:
        ins = inputs(n)
        flex_fn, flex_ins = window_flex_anchors(*ins, 64)[FLEX_DOT]
        ours = _fwd_bwd(functools.partial(W.window_hyp_attn_triton, *ins, 64), ins)
        timers = {"flex_attention": (_fwd_bwd(flex_fn, flex_ins), functools.partial(variant, "one group", variants))}
        timers |= {name: (ours, functools.partial(variant, name, variants)) for name in variants}
        report(rows, n, interleaved(timers))
    write(argv[1], rows)


if __name__ == "__main__":
    main(sys.argv)
