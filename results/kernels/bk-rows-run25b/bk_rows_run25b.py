"""Run 25b: BK-Core two-pass fwd+bwd from CUDA graphs with the read-only first passes (segment maps, first adjoint
pass) at 4 and at 8 rows a loop step (kernels.bk_core.triton.FIRST_PASS_ROWS), 3 interleaved rounds, median; the
kernels of each per torch.profiler; and the per-segment gradient sum (a torch reduction) against a matrix-vector
product, from CUDA graphs."""
import json, os, statistics, sys
import torch
from bench.tiles import _graph_ms, swapped
from kernels.bk_core import triton as bk


def inputs(B, N, C):
    g = torch.Generator(device="cuda").manual_seed(0)
    v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device="cuda", generator=g))
    h0, z_re = (0.5 * torch.randn(C, device="cuda", generator=g) for _ in range(2))
    beta = 1.0 + 0.5 * torch.randn(C, device="cuda", generator=g)
    z_im = 0.05 + 0.5 * torch.rand(C, device="cuda", generator=g)
    return v, h0, beta, z_re, z_im, [torch.randn(B, N, C, device="cuda", generator=g) for _ in range(2)]


def fwd_bwd(v, h0, beta, z_re, z_im, dg):
    g_re, g_im, carry = bk._sweep(v, h0, beta, z_re, z_im, False, None)
    return bk._adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, *dg, False, None)


VARIANTS = [4, 8]
rows = []
for shape in [(16, 16384, 64), (1, 16384, 16), (8, 4096, 32), (16, 2048, 16)]:
    x = inputs(*shape)
    times = {r: [] for r in VARIANTS}
    outs = {}
    for rnd in range(3):
        for r in VARIANTS:
            with swapped(bk, "FIRST_PASS_ROWS", r):
                times[r].append(_graph_ms(lambda: fwd_bwd(*x)).get("ms", float("nan")))
                outs[r] = fwd_bwd(*x)
    diff = max((a - b).abs().max().item() / b.abs().max().item() for a, b in zip(outs[4], outs[8]))
    elems = shape[0] * shape[1] * shape[2]
    for r in VARIANTS:
        ms = statistics.median(times[r])
        rows.append(dict(shape=shape, rows=r, ms=ms, reps=times[r], GBps_32=32 * elems / ms / 1e6, rel_diff_4_8=diff))
        print(f"{shape} rows {r}: fwd+bwd {ms:.4f} ms  {32 * elems / ms / 1e6:.0f} GB/s by 32 B  reps "
              f"{['%.4f' % t for t in times[r]]}  (4 vs 8: rel diff {diff:.1e})", flush=True)

from torch.profiler import ProfilerActivity, profile
x = inputs(16, 16384, 64)
prof_rows = {}
for r in VARIANTS:
    with swapped(bk, "FIRST_PASS_ROWS", r):
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
    prof_rows[r] = ks
    print(f"rows {r}:", " | ".join(f"{k.replace('_kernel', '')} {t:.4f}" for k, t in sorted(ks.items())), flush=True)

sums = []
for B, S, C in [(16, 128, 64), (1, 512, 16), (8, 128, 32)]:
    red = torch.randn(B, S, 4, C, device="cuda")
    ones = torch.ones(B * S, device="cuda")
    ref = red.double().sum(dim=(0, 1))
    cands = {"sum(dim=(0,1))": lambda: red.sum(dim=(0, 1)), "mv(red.T, ones)": lambda: torch.mv(red.view(B * S, -1).t(), ones)}
    row = dict(shape=(B, S, 4, C))
    for name, fn in cands.items():
        row[name] = dict(ms=_graph_ms(fn).get("ms"), err=(fn().double().view(-1) - ref.view(-1)).abs().max().item())
    sums.append(row)
    print("gradient sum", row, flush=True)
json.dump(dict(profile=prof_rows, sums=sums, device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT")), open(sys.argv[1], "w"), indent=1)
