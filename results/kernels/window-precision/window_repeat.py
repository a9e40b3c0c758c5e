"""Repeatability of the bf16 16K c-gradient error: kernel (tf32 and tf32x3 backward) and reference, 3 times each.
Usage (repository root): python3 results/kernels/window-precision/window_repeat.py"""
import sys
import torch
sys.path[:0] = [".", "tests/kernels"]
from test_window_attn_gpu import _all, _inputs
from kernels.window_attn import triton as wa
from kernels.window_attn import window_hyp_attn_ref
orig = wa._cfg
ins = _inputs(1, 4, 16384, 64, seed=1, dtype=torch.bfloat16)
w = torch.randn(1, 4, 16384, 64, device="cuda")
refs = [_all(lambda *a: window_hyp_attn_ref(*a, window=64), [t.float() for t in ins], w) for _ in range(3)]
print("ref c grads", [r[4].tolist() for r in refs], "ref scale", [r[5].tolist() for r in refs][:1], flush=True)
for prec in ("tf32", "tf32x3"):
    wa._cfg = lambda d, dv, dt, win, bm, bn, backward=False, p=prec: orig(d, dv, dt, win, bm, bn, backward)[:4] + ((p,) if backward and dt != torch.float32 else (orig(d, dv, dt, win, bm, bn, backward)[4],))
    for i in range(3):
        got = _all(lambda *a: wa.window_hyp_attn_triton(*a, window=64), ins, w)
        print(prec, i, "c", got[4].tolist(), "rel", ((got[4] - refs[0][4]).norm() / refs[0][4].norm()).item(), flush=True)
