"""Run 23b: BK-Core two-pass with the read-only first passes (segment maps, the adjoint's composites) on segments
F times finer than the sweeps', fwd+bwd from CUDA graphs (3 interleaved rounds, median), the landed kernels beside
them; then each variant's kernels under torch.profiler (eager, 10 calls)."""
import importlib.util, json, os, statistics, sys
import torch
from torch.profiler import ProfilerActivity, profile
from bench.tiles import _graph_ms
from kernels.bk_core import triton as bk

spec = importlib.util.spec_from_file_location("bk_fine", os.path.join(os.path.dirname(__file__), "bk_fine.py"))
ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)

def inputs(B, N, C):
    g = torch.Generator(device="cuda").manual_seed(0)
    v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device="cuda", generator=g))
    h0, z_re = (0.5 * torch.randn(C, device="cuda", generator=g) for _ in range(2))
    beta = 1.0 + 0.5 * torch.randn(C, device="cuda", generator=g)
    z_im = 0.05 + 0.5 * torch.rand(C, device="cuda", generator=g)
    return v, h0, beta, z_re, z_im, [torch.randn(B, N, C, device="cuda", generator=g) for _ in range(2)]

def caller(m, F, chunk, x):
    v, h0, beta, z_re, z_im, dg = x
    def call():
        if m is ex:
            ex.EXP["F"] = F
        g_re, g_im, carry = m._sweep(v, h0, beta, z_re, z_im, False, chunk)
        return m._adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, *dg, False, chunk)
    return call

BIG = [("landed", bk, 1, None), ("L128F1", ex, 1, 128), ("L128F2", ex, 2, 128), ("L128F4", ex, 4, 128),
       ("L256F2", ex, 2, 256), ("L256F4", ex, 4, 256), ("L512F4", ex, 4, 512), ("L512F8", ex, 8, 512),
       ("L64F2", ex, 2, 64)]
SMALL = [("landed", bk, 1, None), ("planF2", ex, 2, None), ("L64F2", ex, 2, 64), ("L64F4", ex, 4, 64),
         ("L128F4", ex, 4, 128)]
rows = []
for shape, variants in (((16, 16384, 64), BIG), ((1, 16384, 16), SMALL), ((8, 4096, 32), SMALL),
                        ((16, 2048, 16), SMALL)):
    x = inputs(*shape)
    times = {v[0]: [] for v in variants}
    for rnd in range(3):
        for name, m, F, chunk in variants:
            times[name].append(_graph_ms(caller(m, F, chunk, x)).get("ms", float("nan")))
    elems = shape[0] * shape[1] * shape[2]
    for name, m, F, chunk in variants:
        ms = statistics.median(times[name])
        rows.append(dict(shape=shape, variant=name, ms=ms, reps=times[name], pct_copy_3000=32 * elems / ms / 1e6 / 3000 * 100))
        print(f"{shape} {name:7s} fwd+bwd {ms:.4f} ms  {rows[-1]['pct_copy_3000']:.1f} % of 3.0 TB/s by 32 B  reps {['%.4f' % t for t in times[name]]}", flush=True)
x = inputs(16, 16384, 64)
prof_rows = {}
for name, m, F, chunk in BIG:
    call = caller(m, F, chunk, x)
    call(); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            call()
        torch.cuda.synchronize()
    ks = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t:
            ks[e.key[:40]] = round(t / 10 / 1000, 5)
    prof_rows[name] = ks
    print(name, " ".join(f"{k.replace('_kernel', '')} {t:.4f}" for k, t in sorted(ks.items())), flush=True)
json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows, profile=prof_rows,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT")), open(sys.argv[1], "w"), indent=1)
