"""Run 25c: BK-Core two-pass fwd+bwd from CUDA graphs with the next step's rows loaded before each step's arithmetic
(kernels.bk_core.triton.PREFETCH_MAPS / PREFETCH_SWEEP / PREFETCH: the segment maps, the forward sweep, the first
adjoint pass), with and without a register cap on the first adjoint pass (72 registers uncapped: 14 programs an
SM where the (16, 16384, 64) plan needs 16 to run in one wave), against none of it; one process, 3 interleaved
rounds, median; the kernels of each variant per torch.profiler."""
import contextlib, json, os, statistics, sys
import torch
from bench.tiles import _graph_ms, swapped
from kernels.bk_core import triton as bk

VARIANTS = {  # name -> (maps, sweep, first adjoint, launch options of the first adjoint)
    "none": (False, False, False, {}),
    "all": (True, True, True, {}),
    "all, cap 64": (True, True, True, {"maxnreg": 64}),
    "maps+sweep": (True, True, False, {}),
}


@contextlib.contextmanager
def variant(name):
    m, s, a, launch = VARIANTS[name]
    with swapped(bk, "PREFETCH_MAPS", m), swapped(bk, "PREFETCH_SWEEP", s), swapped(bk, "PREFETCH", a), \
            swapped(bk, "FIRST_ADJOINT_LAUNCH", launch):
        yield


def inputs(B, N, C):
    g = torch.Generator(device="cuda").manual_seed(0)
    v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device="cuda", generator=g))
    h0, z_re = (0.5 * torch.randn(C, device="cuda", generator=g) for _ in range(2))
    beta = 1.0 + 0.5 * torch.randn(C, device="cuda", generator=g)
    z_im = 0.05 + 0.5 * torch.rand(C, device="cuda", generator=g)
    return v, h0, beta, z_re, z_im, [torch.randn(B, N, C, device="cuda", generator=g) for _ in range(2)]


def fwd_bwd(v, h0, beta, z_re, z_im, dg):
    g_re, g_im, carry = bk._sweep(v, h0, beta, z_re, z_im, False, None)
    return (g_re, g_im, *bk._adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, *dg, False, None))


rows = []
for shape in [(16, 16384, 64), (1, 16384, 16), (8, 4096, 32), (16, 2048, 16)]:
    x = inputs(*shape)
    times = {n: [] for n in VARIANTS}
    outs = {}
    for rnd in range(3):
        for n in VARIANTS:
            with variant(n):
                times[n].append(_graph_ms(lambda: fwd_bwd(*x)).get("ms", float("nan")))
                outs[n] = fwd_bwd(*x)
    elems = shape[0] * shape[1] * shape[2]
    for n in VARIANTS:
        diff = max((a - b).abs().max().item() / b.abs().max().item() for a, b in zip(outs[n], outs["none"]))
        ms = statistics.median(times[n])
        rows.append(dict(shape=shape, variant=n, ms=ms, reps=times[n], GBps_32=32 * elems / ms / 1e6, rel_diff=diff))
        print(f"{shape} {n:12s} fwd+bwd {ms:.4f} ms  {32 * elems / ms / 1e6:.0f} GB/s by 32 B  reps "
              f"{['%.4f' % t for t in times[n]]}  rel diff to none {diff:.1e}", flush=True)

from torch.profiler import ProfilerActivity, profile
x = inputs(16, 16384, 64)
prof_rows = {}
for n in VARIANTS:
    with variant(n):
        fwd_bwd(*x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fwd_bwd(*x)
            torch.cuda.synchronize()
    ks = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t:
            ks[e.key[:40]] = t / 5 / 1000
    prof_rows[n] = ks
    print(f"{n}:", " | ".join(f"{k.replace('_kernel', '')} {t:.4f}" for k, t in sorted(ks.items())), flush=True)
json.dump(dict(profile=prof_rows, device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT")), open(sys.argv[1], "w"), indent=1)
