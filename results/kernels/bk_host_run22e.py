"""Host time of bk_core_triton fwd+bwd at a tiny shape (the GPU idle most of the time): per call, and cProfile's
top entries. Usage: PYTHONPATH=TREE python3 bk_host_run22e.py LABEL"""
import cProfile, pstats, sys, time, io
import torch
from kernels.bk_core.triton import bk_core_triton

x = [torch.randn(1, 256, 64, device="cuda"), *(torch.rand(64, device="cuda") + 0.5 for _ in range(4))]
x = [t.requires_grad_() for t in x]
w = torch.randn(1, 256, 64, device="cuda")

def step():
    g_re, g_im = bk_core_triton(*x)
    ((g_re * w).sum() + g_im.sum()).backward()

def fwd():
    with torch.no_grad():
        bk_core_triton(*x)

for f in (step, fwd):
    for _ in range(20):
        f()
torch.cuda.synchronize()
for name, f in (("fwd+bwd", step), ("fwd no_grad", fwd)):
    best = []
    for rep in range(5):
        t = time.perf_counter()
        for _ in range(200):
            f()
        torch.cuda.synchronize()
        best.append((time.perf_counter() - t) / 200 * 1e6)
    print(f"{sys.argv[1]} {name}: median {sorted(best)[2]:.1f} us a call (min {min(best):.1f})")
pr = cProfile.Profile()
pr.enable()
for _ in range(200):
    step()
torch.cuda.synchronize()
pr.disable()
s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
print(s.getvalue()[-2600:])
