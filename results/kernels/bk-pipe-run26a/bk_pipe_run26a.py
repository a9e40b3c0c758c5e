"""Run 26a: BK-Core's passes as one pipelined launch each (kernels/bk_core/pipeline.py: first passes, carries and
sweeps by ticket, unit after unit, so that a sweep reads its rows while its unit's first passes left them in L2)
against the landed three launches each; forward alone and fwd+bwd, from CUDA graphs, one process, 3 interleaved
rounds, median; each variant checked against the landed kernels and against itself over 20 calls (its tickets race
on the GPU); the kernels per torch.profiler."""
import json, os, statistics, sys
import torch
from bench.tiles import _graph_ms
from kernels.bk_core import triton as bk
from kernels.bk_core.pipeline import pipe_adjoint, pipe_sweep

# name -> (forward options, adjoint options): None runs the landed launches
VARIANTS = {"landed": (None, None), "lag 1": (dict(lag=1), dict(lag=1)), "lag 2": (dict(lag=2), dict(lag=2)),
            "lag 4": (dict(lag=4), dict(lag=4)),
            "lag 2, cb 2": (dict(lag=2, carry_channels=2), dict(lag=2, carry_channels=2)),
            "lag 2, uncapped": (dict(lag=2), dict(lag=2, maxnreg=None)),
            "lag 2, L 64": (dict(lag=2, chunk=64), dict(lag=2, chunk=64)),
            "fwd lag 2 only": (dict(lag=2), None), "adj lag 2 only": (None, dict(lag=2))}


def inputs(B, N, C):
    g = torch.Generator(device="cuda").manual_seed(0)
    v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device="cuda", generator=g))
    h0, z_re = (0.5 * torch.randn(C, device="cuda", generator=g) for _ in range(2))
    beta = 1.0 + 0.5 * torch.randn(C, device="cuda", generator=g)
    z_im = 0.05 + 0.5 * torch.rand(C, device="cuda", generator=g)
    return (v, h0, beta, z_re, z_im), [torch.randn(B, N, C, device="cuda", generator=g) for _ in range(2)]


def forward(name, p):
    opts = VARIANTS[name][0]
    if opts is None:
        return bk._sweep(*p, False, None)
    return pipe_sweep(*p, False, **opts)


def fwd_bwd(name, p, dg):
    g_re, g_im, carry = forward(name, p)
    opts = VARIANTS[name][1]
    if opts is None:
        return (g_re, g_im, *bk._adjoint(*p, carry, g_re, g_im, *dg, False, None))
    return (g_re, g_im, *pipe_adjoint(*p, carry, g_re, g_im, *dg, False, **opts))


rows = []
for shape in [(16, 16384, 64), (1, 16384, 16), (8, 4096, 32), (16, 2048, 16)]:
    p, dg = inputs(*shape)
    ref = fwd_bwd("landed", p, dg)
    checks = {}
    for n in VARIANTS:
        outs = [fwd_bwd(n, p, dg) for _ in range(20)]
        torch.cuda.synchronize()
        self_diff = max((a - b).abs().max().item() for o in outs[1:] for a, b in zip(o, outs[0]))
        ref_diff = max((a - b).abs().max().item() / b.abs().max().item() for a, b in zip(outs[0], ref))
        checks[n] = (self_diff, ref_diff)
    times = {n: {"fwd": [], "fwd+bwd": []} for n in VARIANTS}
    for rnd in range(3):
        for n in VARIANTS:
            times[n]["fwd"].append(_graph_ms(lambda: forward(n, p)).get("ms", float("nan")))
            times[n]["fwd+bwd"].append(_graph_ms(lambda: fwd_bwd(n, p, dg)).get("ms", float("nan")))
    elems = shape[0] * shape[1] * shape[2]
    for n in VARIANTS:
        f, fb = (statistics.median(times[n][k]) for k in ("fwd", "fwd+bwd"))
        rows.append(dict(shape=shape, variant=n, fwd_ms=f, fwd_bwd_ms=fb, reps=times[n], self_diff=checks[n][0],
                         rel_diff_to_landed=checks[n][1]))
        print(f"{shape} {n:12s} fwd {f:.4f} ms ({12 * elems / f / 1e6:.0f} GB/s by 12 B)  fwd+bwd {fb:.4f} ms "
              f"({32 * elems / fb / 1e6:.0f} GB/s by 32 B)  20 calls differ by {checks[n][0]:.1e}, from landed "
              f"{checks[n][1]:.1e}  reps {['%.4f' % t for t in times[n]['fwd']]}", flush=True)

from torch.profiler import ProfilerActivity, profile
p, dg = inputs(16, 16384, 64)
prof_rows = {}
for n in ("landed", "lag 1", "lag 2", "lag 4"):
    fwd_bwd(n, p, dg)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fwd_bwd(n, p, dg)
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
