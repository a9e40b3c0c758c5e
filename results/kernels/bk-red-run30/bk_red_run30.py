"""Run 30: BK-Core's reduction of the parameter gradients' per-segment shares, in the layout the adjoint sweeps
wrote before (B, S, 4, C), summed over (0, 1), against the one they write now (4, C, B S), summed over the last
(contiguous) dimension (kernels/bk_core/triton.py _store_param_grads). Each from CUDA graphs, 3 interleaved rounds,
median, at the segments of (16, 16384, 64) and of the model shapes.

    python3 bk_red_run30.py OUT.json
"""

import json
import os
import statistics
import sys

import torch
import triton.testing

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
from kernels.bk_core.triton import _plan  # noqa: E402

SHAPES = [(16, 16384, 64), (1, 16384, 16), (4, 2048, 256)]


def timers(B, N, C):
    """{layout: fn} for the shares of (B, N, C)'s segments, both holding the same values."""
    S = _plan(B, N, C, None)[3]
    old = torch.randn(B, S, 4, C, device="cuda")
    new = old.permute(2, 3, 0, 1).reshape(4, C, B * S).contiguous()
    torch.testing.assert_close(old.sum(dim=(0, 1)), new.sum(-1), rtol=1e-5, atol=1e-4)
    return S, {"(B, S, 4, C) over (0, 1)": lambda: old.sum(dim=(0, 1)), "(4, C, B S) over -1": lambda: new.sum(-1)}


if __name__ == "__main__":
    rows = {}
    for shape in SHAPES:
        S, fns = timers(*shape)
        times = {name: [] for name in fns}
        for _ in range(3):
            for name, fn in fns.items():
                times[name].append(triton.testing.do_bench_cudagraph(fn, rep=50) * 1000)
        med = {name: statistics.median(t) for name, t in times.items()}
        rows[str(shape)] = dict(segments=S, us=med, reps=times)
        print(f"{shape} S {S}: " + "  ".join(f"{k} {v:.2f} us" for k, v in med.items()), flush=True)
    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT"))  # fmt: skip
    with open(sys.argv[1], "w") as f:
        json.dump(dict(env=env, rows=rows), f, indent=1)
