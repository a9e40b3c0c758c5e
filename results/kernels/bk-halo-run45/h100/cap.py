import sys, math, statistics, torch, triton.testing
sys.argv = ["x"]; sys.path.insert(0, "results/kernels/bk-halo-run45")
import bk_halo as H
from kernels.launch import launch
shape = (16, 16384, 64)
for kind in ("bench", "model"):
    args = [t.detach() for t in H.inputs(kind, *shape, "cuda")]
    g = torch.Generator(device="cpu").manual_seed(1)
    dgr, dgi = (torch.randn(*shape, generator=g).cuda() for _ in range(2))
    B, N, C = shape; bc, nc, L, S = H._plan(B, N, C, None)
    flag = torch.zeros(B, nc, device="cuda", dtype=torch.int32)
    def landed():
        gr, gi, w = H._sweep(*args, False, None); return H._adjoint(*args, w, gr, gi, dgr, dgi, False, None)
    def ad(cap=None, gates=0):
        gr, gi, w, _ = H.halo_fwd(*args, 256, None, adaptive=True)
        out = H.halo_adj(*args, w, gr, gi, dgr, dgi, 256, None, maxnreg=cap, adaptive=True)
        for k in range(gates):
            launch(H._gate_kernel, (B * nc, S), flag, nc, num_warps=2)
        return out
    fns = {"landed": landed, "adaptive": ad, "adaptive cap64": lambda: ad(64), "adaptive cap72": lambda: ad(72),
           "adaptive cap80": lambda: ad(80), "adaptive cap64 +5 gates": lambda: ad(64, 5), "adaptive cap64 +2 gates": lambda: ad(64, 2)}
    t = {k: [] for k in fns}
    for _ in range(3):
        for k, f in fns.items():
            t[k].append(triton.testing.do_bench_cudagraph(f, rep=100))
    mb = 32 * math.prod(shape) / 1e6
    for k, v in t.items():
        m = statistics.median(v); print(f"{kind} {k:26s} {m:.4f} ms {mb/m:6.0f} GB/s by 32 B {v}", flush=True)
