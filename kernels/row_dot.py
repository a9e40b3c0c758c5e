"""Row dot products in one pass: the `delta = sum(do * o, -1)` of the attention backwards.

Both attention backwards need, per row, the dot product of the output gradient with the output (window
attention's softmax delta; linear attention's normaliser gradient, -(do . o) / den, which the kernel finishes
when given den). In PyTorch that is a float32 copy of each
operand, a product and a sum: at (8, 16, 16384, 128) bf16 about 7.5 GB of traffic. Here each program loads
BR rows of both once, multiplies and sums them in float32 registers and stores BR floats.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.grid import cdiv, next_power_of_2
from kernels.launch import launch

#: rows per program
ROWS = 64


@triton.jit
def _row_dot_kernel(A, B, DEN, OUT, R, D: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr, HAS_DEN: tl.constexpr):
    """A, B: (R, D); OUT: (R,) float32 = sum(A * B, -1), or -sum(A * B, -1) / DEN with HAS_DEN (DEN: (R,)
    float32)."""
    rows = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    mask = (rows < R)[:, None] & (cols < D)[None, :]
    offs = rows[:, None] * D + cols[None, :]
    a = tl.load(A + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offs, mask=mask, other=0.0).to(tl.float32)
    out = tl.sum(a * b, axis=1)
    if HAS_DEN:
        out = -out / tl.load(DEN + rows, mask=rows < R, other=1.0)
    tl.store(OUT + rows, out, mask=rows < R)


def row_dot_consts(d: int, den: bool = False) -> dict:
    """The constexprs _row_dot_kernel is launched with for rows of width d (den: with a divisor)."""
    return dict(D=d, BR=ROWS, BD=max(16, next_power_of_2(d)), HAS_DEN=den)


def row_dot(a: torch.Tensor, b: torch.Tensor, den: torch.Tensor | None = None) -> torch.Tensor:
    """a, b: (..., D), one shape, contiguous -> (...) float32, sum(a * b, -1); with den ((...) float32,
    contiguous), -sum(a * b, -1) / den. A launcher's helper: call it inside a custom op (it is not one)."""
    out = torch.empty(a.shape[:-1], device=a.device, dtype=torch.float32)
    rows = out.numel()
    consts = row_dot_consts(a.shape[-1], den is not None)
    launch(_row_dot_kernel, (cdiv(rows, ROWS),), a, b, out if den is None else den, out, rows, **consts)
    return out


def row_dot_ref(a: torch.Tensor, b: torch.Tensor, den: torch.Tensor | None = None) -> torch.Tensor:
    """The reference: float32 copies, product, sum (negated and divided by den where given)."""
    dot = (a.float() * b.float()).sum(-1)
    return dot if den is None else -dot / den


__all__ = ["row_dot", "row_dot_ref"]
