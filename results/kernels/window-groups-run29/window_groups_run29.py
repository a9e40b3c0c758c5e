"""Run 29: the window backward's groups on two streams as landed (kernels/window_attn/triton.py BWD_GROUPS,
_launch_bwd), against one group (the backward before it) and flex_attention (dot-product scores, same window),
fwd+bwd from CUDA graphs, 3 interleaved rounds, median. Shapes (B, 16, N, 64) bf16, window 64: B = 8 (the
benchmark's, groups of batch rows) and B = 1 (groups of heads).

    python3 window_groups_run29.py OUT.json [B:N,...]
"""

import functools
import json
import os
import statistics
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "window-streams-run27b"))
from window_streams_run27b import inputs  # noqa: E402

from bench.kernels import FLEX_DOT, _fwd_bwd, window_flex_anchors  # noqa: E402
from bench.tiles import _graph_ms, swapped  # noqa: E402
from kernels.window_attn import triton as W  # noqa: E402

SHAPES = "8:2048,8:4096,8:8192,8:16384,1:2048,1:16384"


def interleaved(timers):
    """{name: [ms per round]}: 3 interleaved rounds of timers {name: (fn, context)}, fn replayed from a CUDA graph
    inside context() (the variant it times)."""
    times = {name: [] for name in timers}
    for _ in range(3):
        for name, (fn, context) in timers.items():
            with context():
                times[name].append(_graph_ms(fn).get("ms"))
    return times


def report(rows, label, times):
    """rows[label]: the medians of `times` and their rounds, printed against flex_attention's."""
    med = {name: statistics.median(t) for name, t in times.items()}
    rows[label] = dict(ms=med, reps=times)
    flex = med["flex_attention"]
    print(f"{label}: " + "  ".join(f"{k} {ms:.4f} ({ms / flex:.3f}x)" for k, ms in med.items()), flush=True)


def write(path, rows):
    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT"))  # fmt: skip
    with open(path, "w") as f:
        json.dump(dict(env=env, rows=rows), f, indent=1)


def row(b, n):
    """{name: [ms per round]} for flex_attention, one group and the landed groups at (b, 16, n, 64)."""
    ins = inputs(n, B=b)
    flex_fn, flex_ins = window_flex_anchors(*ins, 64)[FLEX_DOT]
    ours = _fwd_bwd(functools.partial(W.window_hyp_attn_triton, *ins, 64), ins)
    groups = lambda count: lambda: swapped(W, "BWD_GROUPS", count)  # noqa: E731
    timers = {"flex_attention": (_fwd_bwd(flex_fn, flex_ins), groups(W.BWD_GROUPS))}
    timers |= {"one group": (ours, groups(1)), f"{W.BWD_GROUPS} groups": (ours, groups(W.BWD_GROUPS))}
    return interleaved(timers)


if __name__ == "__main__":
    rows = {}
    for shape in (sys.argv[2] if len(sys.argv) > 2 else SHAPES).split(","):
        b, n = map(int, shape.split(":"))
        report(rows, shape, row(b, n))
    write(sys.argv[1], rows)
