"""CPU emulation, in float64, of how rounding the window attention's ball points moves its gradients at the bf16
GPU test's shape (tests/kernels/test_window_attn_gpu.py::test_window_bf16[16384-4-64]: one batch, 4 heads, head
dim 64, window 64, the test's seeds):

- main: x = exp0(q) and y = exp0(k) both rounded to bf16, as the kernels store them;
- bplus: x rounded to bf16, y = exp0(k) (1 + delta) with |delta| <= 2^-11 per row (variant B+ scores with r k and
  the hardware's tanh, results/kernels/README.md run 19d), a uniform random delta: no rounding of y.

Prints the relative error (norm) of the output and of each gradient against exact ball points. The bf16 dot
operands and the float32 accumulations of the kernels are not emulated: only the ball points' rounding.

    python results/kernels/window_rounding_emulation_run19.py 16384
"""

import sys

import torch

import kernels.window_attn.naive as wn
from kernels.poincare import naive as pn

EXP0 = pn.exp0


def inputs(n, h=4, d=64):
    g = torch.Generator().manual_seed(1)
    q, k = (torch.randn(1, h, n, d, generator=g) * 0.7 / d**0.5 for _ in range(2))
    v = torch.randn(1, h, n, d, generator=g)
    c = torch.rand(h, generator=g) + 0.2
    s = torch.rand(h, generator=g) * 2 + 0.5
    q, k, v = (t.to(torch.bfloat16).double() for t in (q, k, v))
    w = torch.randn(1, h, n, d, generator=torch.Generator().manual_seed(2)).double()
    return [q, k, v, c.double(), s.double()], w


def straight_through(t, value):
    """value forward, t's gradient backward."""
    return t + (value - t).detach()


def gradients(ins, w, mode):
    """[o, dq, dk, dv, dc, dscale] of window_hyp_attn_ref with the ball points rounded as `mode` says."""
    ins = [t.clone().requires_grad_() for t in ins]
    queries = ins[0]

    def mapped(t, ch):
        ball = EXP0(t, ch)
        if mode == "exact":
            return ball
        if mode == "main" or t is queries:
            return straight_through(ball, ball.to(torch.bfloat16).double())
        g = torch.Generator().manual_seed(3)
        delta = (torch.rand(ball.shape[:-1] + (1,), generator=g, dtype=ball.dtype) * 2 - 1) * 2**-11
        return straight_through(ball, ball * (1 + delta))

    wn.pn.exp0 = mapped
    try:
        o = wn.window_hyp_attn_ref(*ins, window=64)
    finally:
        wn.pn.exp0 = EXP0
    return [o, *torch.autograd.grad((o * w).sum(), ins)]


def main(n):
    ins, w = inputs(n)
    exact = gradients(ins, w, "exact")
    for mode in ("main", "bplus"):
        got = gradients(ins, w, mode)
        names = "o q k v c scale".split()
        errs = {name: f"{((a - b).norm() / b.norm()).item():.2e}" for name, a, b in zip(names, got, exact, strict=True)}
        print(mode, errs)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 16384)
