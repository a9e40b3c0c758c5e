"""Triton RMSNorm: one launch forward, one launch (plus a (P, D) -> (D,) sum) backward.

x: (R, D) rows, weight: (D,), float32 math in registers, BLOCK_D = next power of two >= D (a whole row
per tile, BLOCK_R rows per tile for narrow rows). With r = rsqrt(mean(x^2) + eps), xh = x r, g = dy w:
    forward:   y = xh w                               (stores r per row for the backward)
    backward:  dx = r (g - xh mean(g xh)),  dw = sum_rows dy xh
The backward runs P programs, each looping over row tiles and keeping its dw partial (D,) in
registers; the (P, D) partials are summed in PyTorch, then cast to weight's dtype.
Each launch is a torch.library custom op (phasebench::rms_norm_fwd / _bwd) with a fake impl, the forward
with autograd, so torch.compile(fullgraph=True) sees one opaque op per launch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.custom_op import differentiable_op
from kernels.grid import cdiv, next_power_of_2
from kernels.launch import launch


@triton.jit
def _rms_fwd_kernel(X, W, Y, RSTD, R, D, eps, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """X, Y: (R, D); W: (D,); RSTD: (R,) float32. Y = X rsqrt(mean(X^2) + eps) W."""
    eps = tl.cast(eps, tl.float32)  # inductor passes Python floats as fp64
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    rm = rows < R
    cm = cols < D
    m = rm[:, None] & cm[None, :]
    offs = rows.to(tl.int64)[:, None] * D + cols[None, :]
    x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=cm, other=0.0).to(tl.float32)
    r = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / D + eps)
    tl.store(Y + offs, (x * r[:, None] * w[None, :]).to(Y.dtype.element_ty), mask=m)
    tl.store(RSTD + rows, r, mask=rm)


@triton.jit
def _rms_bwd_kernel(X, W, RSTD, DY, DX, DWP, R, D, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """X, DY, DX: (R, D); W: (D,); RSTD: (R,) float32; DWP: (P, D) float32 per-program dw partials."""
    pid = tl.program_id(0)
    step = tl.num_programs(0) * BLOCK_R
    cols = tl.arange(0, BLOCK_D)
    cm = cols < D
    w = tl.load(W + cols, mask=cm, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(pid * BLOCK_R, R, step):
        rows = start + tl.arange(0, BLOCK_R)
        rm = rows < R
        m = rm[:, None] & cm[None, :]
        offs = rows.to(tl.int64)[:, None] * D + cols[None, :]
        x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=m, other=0.0).to(tl.float32)
        r = tl.load(RSTD + rows, mask=rm, other=0.0)
        xh = x * r[:, None]
        g = dy * w[None, :]
        c = tl.sum(g * xh, axis=1) / D
        dx = (g - xh * c[:, None]) * r[:, None]
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=m)
        dw += tl.sum(dy * xh, axis=0)
    tl.store(DWP + pid.to(tl.int64) * D + cols, dw, mask=cm)


def _blocks(d: int) -> tuple[int, int, int]:
    """Row width d -> (BLOCK_R, BLOCK_D, num_warps): tiles of ~4096 elements, wider rows one per tile."""
    bd = next_power_of_2(max(d, 1))
    br = max(1, min(16, 4096 // bd))
    warps = max(1, min(16, br * bd // 512))
    return br, bd, warps


def _bwd_programs(x: torch.Tensor, tiles: int) -> int:
    """How many backward programs (each keeps one dw partial): a few per SM on CUDA."""
    if x.is_cuda:
        return max(1, min(tiles, 4 * torch.cuda.get_device_properties(x.device).multi_processor_count))
    return max(1, min(tiles, 4))


def _rms_norm_fwd(
    x: torch.Tensor, weight: torch.Tensor, eps: float, block_r: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (R, D) contiguous; weight: (D,) contiguous -> y: (R, D) in x's dtype, rstd: (R,) float32."""
    r, d = x.shape
    y = torch.empty_like(x)
    rstd = torch.empty(r, device=x.device, dtype=torch.float32)
    if r == 0:
        return y, rstd
    br, bd, warps = _blocks(d)
    br = block_r or br
    launch(_rms_fwd_kernel, (cdiv(r, br),), x, weight, y, rstd, r, d, eps, BLOCK_R=br, BLOCK_D=bd, num_warps=warps)
    return y, rstd


def _rms_norm_bwd(
    x: torch.Tensor,
    weight: torch.Tensor,
    rstd: torch.Tensor,
    dy: torch.Tensor,
    block_r: int | None = None,
    programs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, dy: (R, D) contiguous; weight: (D,); rstd: (R,) float32 -> dx: (R, D) in x's dtype, dw: (D,) in
    weight's dtype. block_r / programs override the tiling (tests)."""
    r, d = x.shape
    dx = torch.empty_like(x)
    if r == 0:
        return dx, torch.zeros_like(weight)
    br, bd, warps = _blocks(d)
    br = block_r or br
    tiles = cdiv(r, br)
    p = min(programs or _bwd_programs(x, tiles), tiles)
    partial = torch.empty(p, d, device=x.device, dtype=torch.float32)
    launch(_rms_bwd_kernel, (p,), x, weight, rstd, dy, dx, partial, r, d, BLOCK_R=br, BLOCK_D=bd, num_warps=warps)
    return dx, partial.sum(0).to(weight.dtype)


# Custom ops: dynamo and AOTAutograd see each launch as one opaque op (fake impls give the shapes).


@torch.library.custom_op("phasebench::rms_norm_fwd", mutates_args=())
def rms_norm_fwd_op(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (R, D); weight: (D,) -> y: (R, D) in x's dtype, rstd: (R,) float32."""
    return _rms_norm_fwd(x, weight, eps)


@torch.library.custom_op("phasebench::rms_norm_bwd", mutates_args=())
def rms_norm_bwd_op(
    x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor, dy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, dy: (R, D); weight: (D,); rstd: (R,) float32 -> dx: (R, D), dw: (D,) in weight's dtype."""
    return _rms_norm_bwd(x, weight, rstd, dy)


@rms_norm_fwd_op.register_fake
def _(x, weight, eps):
    return torch.empty_like(x), x.new_empty(x.shape[:1], dtype=torch.float32)


@rms_norm_bwd_op.register_fake
def _(x, weight, rstd, dy):
    return torch.empty_like(x), torch.empty_like(weight)


def _setup(ctx, inputs, output):
    x, weight, _ = inputs
    _, rstd = output
    ctx.mark_non_differentiable(rstd)
    ctx.set_materialize_grads(False)  # rstd's gradient stays None: no zeros kernel in backward
    ctx.save_for_backward(x, weight, rstd)


def _backward(ctx, bwd, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = bwd(x, weight, rstd, dy.contiguous())
    return dx, dw, None


_rms_norm = differentiable_op(rms_norm_fwd_op, rms_norm_bwd_op, _setup, _backward)


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x: (..., D); weight: (D,) -> (..., D) in x's dtype (float32 math)."""
    y, _ = _rms_norm(x.reshape(-1, x.shape[-1]).contiguous(), weight.contiguous(), float(eps))
    return y.view(x.shape)


__all__ = ["rms_norm_triton"]
