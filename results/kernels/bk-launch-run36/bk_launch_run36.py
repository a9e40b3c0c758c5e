"""Run 36 (thirty-second session): BK-Core's eager fwd+bwd at (16, 16384, 64) float32 with its six Triton kernels
launched through the JIT (as shipped) and launched directly: each kernel's first call goes through the JIT, which
returns the compiled kernel; later calls hand the same arguments to its launcher, skipping the JIT's per-call
binding, specialisation and cache lookup. An experiment, not a launcher: the cache is keyed by the grid and the
constexprs only (this script's shapes and fresh allocations never change alignment).

    python3 bk_launch_run36.py OUT.json

Prints (1) the host's time a launch of the forward sweep kernel, both ways (200 launches queued, no sync inside);
(2) the host's time of one eager fwd+bwd call, both ways; (3) eager fwd+bwd as bench/kernels.py times it
(triton.testing.do_bench, L2 flushed before each call), 3 interleaved rounds, median; gradients compared bit for bit.
"""

import contextlib
import json
import os
import statistics
import sys
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)

from bench.kernels import _fwd_bwd, environment, time_fn  # noqa: E402
from kernels.bk_core import triton as T  # noqa: E402

KERNELS = (
    "_seg_map_kernel",
    "_seg_carry_kernel",
    "_sweep_kernel",
    "_adj_seg_kernel",
    "_adj_carry_kernel",
    "_adj_sweep_kernel",
)


class Direct:
    """`kernel[grid](*args, **kw)`: the JIT's first launch per (grid, constexprs), the compiled kernel's after."""

    def __init__(self, jit):
        self.jit, self.cache = jit, {}

    def __getitem__(self, grid):
        def launch(*args, **kw):
            key = (grid, tuple(kw.items()))
            hit = self.cache.get(key)
            if hit is None:
                k = self.jit[grid](*args, **kw)
                tail = [kw[n] for n in self.jit.arg_names[len(args) :]]
                self.cache[key] = (k.run, k.function, k.packed_metadata, tail)
                return
            run, fn, meta, tail = hit
            g = (*grid, 1, 1)
            run(g[0], g[1], g[2], torch._C._cuda_getCurrentRawStream(0), fn, meta, None, None, None, *args, *tail)

        return launch


@contextlib.contextmanager
def direct():
    saved = {n: getattr(T, n) for n in KERNELS}
    for n in KERNELS:
        setattr(T, n, Direct(saved[n]))
    T._segment_launch.cache_clear()
    try:
        yield
    finally:
        for n, k in saved.items():
            setattr(T, n, k)
        T._segment_launch.cache_clear()


def inputs():
    torch.manual_seed(0)
    B, N, C = 16, 16384, 64
    v = torch.randn(B, N, C, device="cuda").requires_grad_()
    h0 = (torch.randn(C, device="cuda") * 0.1).requires_grad_()
    beta = (torch.rand(C, device="cuda") + 0.5).requires_grad_()
    z_re, z_im = torch.zeros(C, device="cuda").requires_grad_(), (torch.rand(C, device="cuda") + 0.5).requires_grad_()
    return v, h0, beta, z_re, z_im


def grads(args):
    for t in args:
        t.grad = None
    g_re, g_im = T.bk_core_triton(*args)
    torch.manual_seed(1)
    torch.autograd.backward((g_re, g_im), (torch.randn_like(g_re), torch.randn_like(g_im)))
    out = [g_re.detach().clone(), g_im.detach().clone()] + [t.grad.clone() for t in args]
    for t in args:
        t.grad = None
    return out


def launch_host_us(args, n=200):
    """Host microseconds a `_sweep_kernel` launch (the forward's sweep, its landed arguments)."""
    v, h0, beta, z_re, z_im = args
    B, N, C = v.shape
    block_c, n_cblk, L, S = T._plan(B, N, C, None)
    w = torch.zeros(B, S, 2, C, device="cuda")
    g_re, g_im = torch.empty_like(v), torch.empty_like(v)

    def one():
        T._sweep_kernel[(B * n_cblk, S)](
            v, h0, beta, z_re, z_im, w, g_re, g_im, N, C, L, S, n_cblk, REVERSE=False, BLOCK_C=block_c,
            **T._segment_launch(T._sweep_kernel, block_c),
        )  # fmt: skip

    return queued_host_us(one, n)


def queued_host_us(one, n=200):
    """Host microseconds a call of `one`, n calls queued without a sync, median of 5 rounds (after two warm-ups)."""
    one()
    one()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            one()
        times.append((time.perf_counter() - t0) / n * 1e6)
        torch.cuda.synchronize()
    return statistics.median(times)


def call_host_us(run, n=30):
    """Host microseconds of one eager fwd+bwd call (the device drained before each)."""
    run()
    times = []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e6)
    torch.cuda.synchronize()
    return statistics.median(times)


def main(out):
    args = inputs()
    run = _fwd_bwd(lambda: T.bk_core_triton(*args), args)
    base = grads(args)
    with direct():
        got = grads(args)
        got = grads(args)  # the second call launches directly
    same = [torch.equal(a, b) for a, b in zip(base, got, strict=True)]
    print("outputs and gradients (g_re, g_im, v, h0, beta, z_re, z_im) identical:", same)
    result = {"environment": environment(sys.argv, "cuda"), "shape": [16, 16384, 64], "identical": same}
    for name, ctx in (("jit", contextlib.nullcontext), ("direct", direct)):
        with ctx():
            result[f"{name}_launch_host_us"] = launch_host_us(args)
            result[f"{name}_call_host_us"] = call_host_us(run)
        print(
            f"{name}: {result[f'{name}_launch_host_us']:.2f} us a sweep launch, "
            f"{result[f'{name}_call_host_us']:.1f} us of host a fwd+bwd call"
        )
    rounds = {"jit": [], "direct": []}
    for _ in range(3):
        for name, ctx in (("jit", contextlib.nullcontext), ("direct", direct)):
            with ctx():
                rounds[name].append(time_fn(run, "cuda", graph=False)["median_ms"])
    for name, ms in rounds.items():
        med = statistics.median(ms)
        pct = 32 * args[0].numel() / (med * 1e-3) / 1e9
        result[f"{name}_eager_ms"] = ms
        print(f"{name}: eager fwd+bwd {' / '.join(f'{m:.4f}' for m in ms)} ms, median {med:.4f} ({pct:.0f} GB/s)")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
