"""Run 39 (thirty-third session): what each part of `kernels/launch.py`'s direct path saves on the host, in one
process, interleaved. Four ways to launch every kernel:

- jit: `kernel[grid](...)` (kernels.launch.DIRECT off);
- runner, class key: the path as run 37 timed it (the key by the JIT's classes, the compiled kernel's runner);
- runner: the landed key (scalars by value), the runner;
- direct (landed): the landed key, `CompiledKernel.run` called with the stream and the kernel's handles.

Prints (1) the host's microseconds a launch of BK-Core's forward sweep kernel (200 queued, no sync inside);
(2) per op of CASES (run 37's, fewer), the host's microseconds of one eager fwd+bwd call (device drained before
each) and the eager fwd+bwd time as bench/kernels.py takes it (do_bench, L2 flushed), 3 rounds, median.

    python3 launch_ab_run39.py OUT.json
"""

import contextlib
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "results" / "kernels" / "bk-launch-run36"))

from bk_launch_run36 import call_host_us, queued_host_us  # noqa: E402

import bench.kernels as BK  # noqa: E402
from kernels import launch as L  # noqa: E402
from kernels.bk_core import triton as T  # noqa: E402

_I32, _I64 = 1 << 31, 1 << 63
CASES = [("bk_core", 16384), ("bk_core", 2048), ("window_attn", 2048), ("scan", 2048), ("poincare_exp0", 2048)]


def _class_key(args):
    """Run 37's key: ints by the JIT's classes (== 1, % 16, range), floats by type, bools and None by value."""
    key = []
    for a in args:
        if isinstance(a, torch.Tensor):
            key.append((a.dtype, a.data_ptr() % 16 == 0))
        elif type(a) is int:
            key.append((a == 1, a % 16 == 0, 0 if -_I32 <= a < _I32 else 1 if -_I64 <= a < _I64 else 2))
        elif type(a) is float:
            key.append(float)
        elif type(a) is bool or a is None:
            key.append((type(a), a))
        else:
            return None
    return tuple(key)


@contextlib.contextmanager
def way(name):
    saved = L.DIRECT, L.specialisation_key, L._hooked
    L.DIRECT = name != "jit"
    if name == "runner, class key":
        L.specialisation_key = _class_key
    if name.startswith("runner"):
        L._hooked = lambda: True
    L._plans.clear()
    try:
        yield
    finally:
        L.DIRECT, L.specialisation_key, L._hooked = saved
        L._plans.clear()


WAYS = ("jit", "runner, class key", "runner", "direct (landed)")


def sweep_launch_us(n=200):
    """Host microseconds a `_sweep_kernel` launch at (16, 16384, 64), through `launch`."""
    torch.manual_seed(0)
    B, N, C = 16, 16384, 64
    v = torch.randn(B, N, C, device="cuda")
    h0, beta, z_re, z_im = (torch.rand(C, device="cuda") + 0.5 for _ in range(4))
    block_c, n_cblk, L_, S = T._plan(B, N, C, None)
    w = torch.zeros(B, S, 2, C, device="cuda")
    g_re, g_im = torch.empty_like(v), torch.empty_like(v)

    def one():
        L.launch(T._sweep_kernel, (B * n_cblk, S),
            v, h0, beta, z_re, z_im, w, g_re, g_im, N, C, L_, S, n_cblk, REVERSE=False, BLOCK_C=block_c,
            **T._segment_launch(T._sweep_kernel, block_c),
        )  # fmt: skip

    return queued_host_us(one, n)


def main(out):
    BK.SKIP_ANCHORS = frozenset({"fla", "flex", "sdpa", "accelerated", "score_mod"})
    bw = BK.copy_bandwidth("cuda", False)
    result = {"environment": BK.environment(sys.argv, "cuda"), "copy_bandwidth_Bps": bw, "ways": WAYS}
    launch_us = {w: [] for w in WAYS}
    for _ in range(3):
        for w in WAYS:
            with way(w):
                launch_us[w].append(sweep_launch_us())
    result["sweep_launch_host_us"] = launch_us
    print(f"copy bandwidth {bw / 1e9:.0f} GB/s; host us a BK-Core sweep launch (median of 3 rounds):")
    print("  " + "  ".join(f"{w}: {statistics.median(t):.2f}" for w, t in launch_us.items()))
    rows = []
    print(f"{'op':22} {'N':>6}  " + "  ".join(f"{w + ' ms / host us':>30}" for w in WAYS))
    for op, n in CASES:
        shape, impls, _, inputs, *_ = BK.CASES[op](n, "cuda", BK.DTYPES[op], False)
        run = BK._fwd_bwd(impls["triton"], inputs)
        ms, host = {w: [] for w in WAYS}, {w: [] for w in WAYS}
        for _ in range(3):
            for w in WAYS:
                with way(w):
                    host[w].append(call_host_us(run, n=20))
                    ms[w].append(BK.time_fn(run, "cuda", graph=False)["median_ms"])
        row = {"op": op, "N": n, "shape": shape, "ms": ms, "host_us": host}
        med = {w: (statistics.median(ms[w]), statistics.median(host[w])) for w in WAYS}
        if op == "bk_core":
            numel = inputs[0].numel()
            row["frac_of_copy_bw"] = {w: 32 * numel / (t * 1e-3) / bw for w, (t, _) in med.items()}
        rows.append(row)
        print(f"{op:22} {n:>6}  " + "  ".join(f"{t:>20.4f} / {h:>7.0f}" for t, h in med.values()))
        if "frac_of_copy_bw" in row:
            print(" " * 30 + "  ".join(f"{f:>30.1%}" for f in row["frac_of_copy_bw"].values()))
        sys.stdout.flush()
        del run, inputs, impls
        torch.cuda.empty_cache()
    result["rows"] = rows
    Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
