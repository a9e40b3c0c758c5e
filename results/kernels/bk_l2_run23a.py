"""Run 23a: BK-Core two-pass fwd+bwd from CUDA graphs with the sweeps' segment order reversed (each pass starts
where the one before ended, so a segment's second read can come from L2), L2 eviction hints, and batch chunks;
the landed kernels beside them, 3 interleaved rounds, median."""
import importlib.util, json, os, statistics, sys
import torch
from bench.tiles import _graph_ms
from kernels.bk_core import triton as bk

spec = importlib.util.spec_from_file_location("bk_l2", os.path.join(os.path.dirname(__file__), "bk_l2.py"))
ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)

def inputs(B, N, C):
    g = torch.Generator(device="cuda").manual_seed(0)
    v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device="cuda", generator=g))
    h0, z_re = (0.5 * torch.randn(C, device="cuda", generator=g) for _ in range(2))
    beta = 1.0 + 0.5 * torch.randn(C, device="cuda", generator=g)
    z_im = 0.05 + 0.5 * torch.rand(C, device="cuda", generator=g)
    return v, h0, beta, z_re, z_im, [torch.randn(B, N, C, device="cuda", generator=g) for _ in range(2)]

FULL = [("landed", None), ("d0h0", (False, 0, None)), ("d1h0", (True, 0, None)), ("d1h1", (True, 1, None)),
        ("d1h2", (True, 2, None)), ("d1h3", (True, 3, None)), ("d0h2", (False, 2, None)), ("d1h0b8", (True, 0, 8)),
        ("d1h2b8", (True, 2, 8)), ("d1h3b8", (True, 3, 8)), ("d1h3b4", (True, 3, 4))]
SMALL = [v for v in FULL if v[0] in ("landed", "d1h0", "d1h2", "d1h3")]
shapes = [((16, 16384, 64), FULL), ((1, 16384, 16), SMALL), ((8, 4096, 32), SMALL), ((16, 2048, 16), SMALL)]
rows = []
for shape, variants in shapes:
    v, h0, beta, z_re, z_im, dg = inputs(*shape)
    times = {name: [] for name, _ in variants}
    fwd = {name: [] for name, _ in variants}
    for rnd in range(3):
        for name, cfg in variants:
            m = bk if cfg is None else ex
            if cfg is not None:
                ex.EXP.update(descend=cfg[0], hint=cfg[1], bchunk=cfg[2])
            def call():
                g_re, g_im, carry = m._sweep(v, h0, beta, z_re, z_im, False, None)
                return m._adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, *dg, False, None)
            def fcall():
                return m._sweep(v, h0, beta, z_re, z_im, False, None)
            times[name].append(_graph_ms(call).get("ms", float("nan")))
            fwd[name].append(_graph_ms(fcall).get("ms", float("nan")))
    elems = shape[0] * shape[1] * shape[2]
    for name, _ in variants:
        ms = statistics.median(times[name])
        row = dict(shape=shape, variant=name, ms=ms, fwd_ms=statistics.median(fwd[name]), reps=times[name],
                   GBps_32=32 * elems / ms / 1e6)
        rows.append(row)
        print(f"{shape} {name:8s} fwd+bwd {ms:.4f} ms (fwd {row['fwd_ms']:.4f})  {row['GBps_32']:.0f} GB/s by 32 B  reps {['%.4f' % t for t in times[name]]}", flush=True)
from torch.profiler import ProfilerActivity, profile
shape = (16, 16384, 64)
v, h0, beta, z_re, z_im, dg = inputs(*shape)
prof_rows = {}
for name, cfg in [("landed", None), ("d1h0", (True, 0, None)), ("d1h2", (True, 2, None)), ("d1h3", (True, 3, None))]:
    m = bk if cfg is None else ex
    if cfg is not None:
        ex.EXP.update(descend=cfg[0], hint=cfg[1], bchunk=cfg[2])
    def call():
        g_re, g_im, carry = m._sweep(v, h0, beta, z_re, z_im, False, None)
        return m._adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, *dg, False, None)
    call(); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            call()
        torch.cuda.synchronize()
    ks = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t and e.key.startswith("_"):
            ks[e.key] = t / 5 / 1000
    prof_rows[name] = ks
    print(name, " ".join(f"{k.replace('_kernel', '')} {t:.4f}" for k, t in sorted(ks.items())), flush=True)
json.dump(dict(profile=prof_rows, device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT")), open(sys.argv[1], "w"), indent=1)
