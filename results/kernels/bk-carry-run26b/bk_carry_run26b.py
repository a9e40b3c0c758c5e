"""Run 26b: BK-Core's two carry scans with fewer channels a program (kernels/bk_core/triton.py _carry_blocks: 8 at
(16, 16384, 64), 128 programs, about one an SM), fwd+bwd from CUDA graphs, one process, 3 interleaved rounds,
median; the carry kernels per torch.profiler."""
import json, statistics, sys
import torch
from bench.tiles import _graph_ms, swapped
from kernels.bk_core import triton as bk

landed = bk._carry_blocks


def fewer(cb):
    def blocks(S, block_c):
        block_s, c, warps = landed(S, block_c)
        return block_s, min(c, cb), warps
    return blocks


def half(S, block_c):
    """At most 512 elements a program (4 warps)."""
    block_s, c, warps = landed(S, block_c)
    return block_s, max(1, min(c, 512 // block_s)), warps


VARIANTS = {"landed": landed, "cb 4": fewer(4), "cb 2": fewer(2), "cb 1": fewer(1), "512": half}
B, N, C = (int(x) for x in sys.argv[2].split(",")) if len(sys.argv) > 2 else (16, 16384, 64)
if len(sys.argv) > 2:
    VARIANTS = {"landed": landed, "512": half}
g = torch.Generator(device="cuda").manual_seed(0)
v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device="cuda", generator=g))
h0, z_re = (0.5 * torch.randn(C, device="cuda", generator=g) for _ in range(2))
beta = 1.0 + 0.5 * torch.randn(C, device="cuda", generator=g)
z_im = 0.05 + 0.5 * torch.rand(C, device="cuda", generator=g)
dg = [torch.randn(B, N, C, device="cuda", generator=g) for _ in range(2)]
p = (v, h0, beta, z_re, z_im)


def fwd_bwd():
    g_re, g_im, carry = bk._sweep(*p, False, None)
    return (g_re, g_im, *bk._adjoint(*p, carry, g_re, g_im, *dg, False, None))


times = {n: [] for n in VARIANTS}
for rnd in range(3):
    for n, f in VARIANTS.items():
        with swapped(bk, "_carry_blocks", f):
            times[n].append(_graph_ms(fwd_bwd)["ms"])
rows = {}
from torch.profiler import ProfilerActivity, profile
for n, f in VARIANTS.items():
    with swapped(bk, "_carry_blocks", f):
        fwd_bwd()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fwd_bwd()
            torch.cuda.synchronize()
    ks = {e.key[:30]: (getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)) / 5000
          for e in prof.key_averages() if "carry" in e.key}
    ms = statistics.median(times[n])
    rows[n] = dict(ms=ms, reps=times[n], carries=ks)
    print(f"{n:7s} fwd+bwd {ms:.4f} ms ({32 * v.numel() / ms / 1e6:.0f} GB/s by 32 B) reps "
          f"{['%.4f' % t for t in times[n]]} carries {ks}", flush=True)
json.dump(dict(device=torch.cuda.get_device_name(), rows=rows), open(sys.argv[1], "w"), indent=1)
