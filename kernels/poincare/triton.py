"""Triton row-wise Poincare-ball maps: exp0, log0, mobius_add with their backward.

Each program owns BLOCK_R rows of (R, D) and computes the row norms/dots and the map in one pass
(float32 math, any input dtype). c arrives as one float32 per row (the caller expands c to
x[..., :1]); its gradient comes back per row and is summed to c's shape.
Each launch is a torch.library custom op (phasebench::poincare_*) with a fake impl and autograd, so
torch.compile(fullgraph=True) sees one opaque op per launch; the public functions reshape in plain PyTorch.

With n = sqrt(max(|x|^2, MIN_NORM^2)), u = sqrt(c) n and (x . g) the row dot with the output grad:
    exp0:  y = f(u) x,  f = tanh(u)/u      dx = f g + c q(u) (x.g) x,  dc = q(u) (x.g) n^2 / 2,  q = f'(u)/u
    log0:  y = h(u) x,  h = artanh(min(u, 1-eps))/u, same form with k = h'(u)/u
For u < 0.1 the ratios and q, k use their Taylor series (no cancellation, finite at 0).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.custom_op import differentiable_op
from kernels.grid import cdiv, next_power_of_2
from kernels.launch import launch
from kernels.poincare.naive import BALL_EPS, DEN_MIN, MIN_NORM


@triton.jit
def _norm2_floored(x, min_norm):
    """|row|^2 of float32 rows x, floored at min_norm^2 (float32): the norm every row map divides by."""
    return tl.maximum(tl.sum(x * x, axis=1), min_norm * min_norm)


@triton.jit
def _tanh_ratio_series(u2):
    """tanh(u)/u for u < 0.1, from u^2 (its Taylor series to u^6)."""
    return 1.0 + u2 * (-1.0 / 3.0 + u2 * (2.0 / 15.0 + u2 * (-17.0 / 315.0)))


@triton.jit
def _tanh_ratio(u):
    """f = tanh(u)/u and q = f'(u)/u for u >= 0."""
    u2 = u * u
    ub = tl.maximum(u, 0.1)  # the closed forms only serve u >= 0.1
    t = tl.exp(-2.0 * ub)
    th = (1.0 - t) / (1.0 + t)
    f_big = th / ub
    q_big = (1.0 - th * th - f_big) / (ub * ub)
    f_small = _tanh_ratio_series(u2)
    q_small = -2.0 / 3.0 + u2 * (8.0 / 15.0 + u2 * (-34.0 / 105.0 + u2 * (496.0 / 2835.0)))
    small = u < 0.1
    return tl.where(small, f_small, f_big), tl.where(small, q_small, q_big)


@triton.jit
def _artanh_ratio(u, umax, at_max):
    """h = artanh(min(u, umax))/u and k = h'(u)/u (the clamp's derivative is zero) for u >= 0.

    at_max = artanh(umax), computed in float64 on the host (1 - umax is not exact in float32).
    """
    u2 = u * u
    ub = tl.maximum(u, 0.1)  # the closed forms only serve u >= 0.1
    ucb = tl.minimum(ub, umax)
    at = tl.where(ub >= umax, at_max, 0.5 * tl.log((1.0 + ucb) / (1.0 - ucb)))
    h_big = at / ub
    k_big = tl.where(ub >= umax, -at / (ub * ub * ub), (1.0 / (1.0 - ub * ub) - h_big) / (ub * ub))
    h_small = 1.0 + u2 * (1.0 / 3.0 + u2 * (1.0 / 5.0 + u2 * (1.0 / 7.0 + u2 * (1.0 / 9.0))))
    k_small = 2.0 / 3.0 + u2 * (4.0 / 5.0 + u2 * (6.0 / 7.0 + u2 * (8.0 / 9.0)))
    small = u < 0.1
    return tl.where(small, h_small, h_big), tl.where(small, k_small, k_big)


@triton.jit
def _exp0_rows(x, c, min_norm):
    """exp0 on a tile: tangent rows x (float32), c per row or one scalar -> the ball points (float32), as
    _rowmap_fwd_kernel (for the kernels that fuse it)."""
    min_norm = tl.cast(min_norm, tl.float32)  # inductor passes Python floats as fp64
    n = tl.sqrt(_norm2_floored(x, min_norm))
    r, _ = _tanh_ratio(tl.sqrt(c) * n)
    return r[:, None] * x


@triton.jit
def _ratio_map_grad(x, g, c, n2, r, dr):
    """Backward of y = r x row by row, r a ratio of u = sqrt(c n2) with dr = r'(u)/u: rows x, g (float32) and
    n2 = |x|^2 (floored), c per row or one scalar -> dx (rows) and each row's c gradient."""
    xg = tl.sum(x * g, axis=1)
    return r[:, None] * g + (c * dr * xg)[:, None] * x, dr * xg * n2 * 0.5


@triton.jit
def _exp0_bwd_rows(x, g, c, min_norm):
    """exp0's backward on a tile: tangent rows x and the gradient g of exp0(x) (float32), c per row or one
    scalar -> dx and each row's c gradient, as _rowmap_bwd_kernel (for the kernels that fuse it)."""
    min_norm = tl.cast(min_norm, tl.float32)  # inductor passes Python floats as fp64
    n2 = _norm2_floored(x, min_norm)
    r, dr = _tanh_ratio(tl.sqrt(c * n2))
    return _ratio_map_grad(x, g, c, n2, r, dr)


@triton.jit
def _rowmap_fwd_kernel(
    X, C, Y, R, D, min_norm, umax, at_max, LOG: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr
):
    """X, Y: (R, D); C: (R,) float32. Y = exp0(X) (LOG=False) or log0(X) (LOG=True)."""
    # inductor passes Python floats as fp64
    min_norm, umax, at_max = tl.cast(min_norm, tl.float32), tl.cast(umax, tl.float32), tl.cast(at_max, tl.float32)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    rm = rows < R
    m = rm[:, None] & (cols < D)[None, :]
    offs = rows.to(tl.int64)[:, None] * D + cols[None, :]
    x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
    c = tl.load(C + rows, mask=rm, other=1.0)
    if LOG:
        n = tl.sqrt(_norm2_floored(x, min_norm))
        r, _ = _artanh_ratio(tl.sqrt(c) * n, umax, at_max)
        y = r[:, None] * x
    else:
        y = _exp0_rows(x, c, min_norm)
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=m)


@triton.jit
def _rowmap_bwd_kernel(
    X, C, G, DX, DC, R, D, min_norm, umax, at_max, LOG: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr
):
    """G: grad of Y; DX: (R, D); DC: (R,) float32 per-row curvature grads."""
    # inductor passes Python floats as fp64
    min_norm, umax, at_max = tl.cast(min_norm, tl.float32), tl.cast(umax, tl.float32), tl.cast(at_max, tl.float32)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    rm = rows < R
    m = rm[:, None] & (cols < D)[None, :]
    offs = rows.to(tl.int64)[:, None] * D + cols[None, :]
    x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
    g = tl.load(G + offs, mask=m, other=0.0).to(tl.float32)
    c = tl.load(C + rows, mask=rm, other=1.0)
    n2 = _norm2_floored(x, min_norm)
    u = tl.sqrt(c * n2)
    if LOG:
        r, dr = _artanh_ratio(u, umax, at_max)
    else:
        r, dr = _tanh_ratio(u)
    dx, dc = _ratio_map_grad(x, g, c, n2, r, dr)
    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=m)
    tl.store(DC + rows, dc, mask=rm)


@triton.jit
def _mobius_tile(X, Yv, R, D, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's rows of X, Yv (R, D) -> rows, their mask rm, the tile's offsets and mask m, x, y (float32)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    rm = rows < R
    m = rm[:, None] & (cols < D)[None, :]
    offs = rows.to(tl.int64)[:, None] * D + cols[None, :]
    x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
    y = tl.load(Yv + offs, mask=m, other=0.0).to(tl.float32)
    return rows, rm, offs, m, x, y


@triton.jit
def _mobius_terms(x, y, c):
    """Rows x, y (BLOCK_R, BLOCK_D), c (BLOCK_R,) -> per row <x,y>, |x|^2, |y|^2, a = 1 + 2c<x,y> + c|y|^2,
    b = 1 - c|x|^2 and the unfloored denominator 1 + 2c<x,y> + c^2 |x|^2 |y|^2 of x (+) y = (a x + b y) / den."""
    xy = tl.sum(x * y, axis=1)
    x2 = tl.sum(x * x, axis=1)
    y2 = tl.sum(y * y, axis=1)
    a = 1.0 + 2.0 * c * xy + c * y2
    b = 1.0 - c * x2
    return xy, x2, y2, a, b, 1.0 + 2.0 * c * xy + c * c * x2 * y2


@triton.jit
def _mobius_fwd_kernel(X, Yv, C, OUT, R, D, den_min, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """X, Yv, OUT: (R, D); C: (R,). OUT = X (+) Yv."""
    den_min = tl.cast(den_min, tl.float32)  # inductor passes Python floats as fp64
    rows, rm, offs, m, x, y = _mobius_tile(X, Yv, R, D, BLOCK_R, BLOCK_D)
    c = tl.load(C + rows, mask=rm, other=1.0)
    _xy, _x2, _y2, a, b, den_raw = _mobius_terms(x, y, c)
    den = tl.maximum(den_raw, den_min)
    out = (a[:, None] * x + b[:, None] * y) / den[:, None]
    tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=m)


@triton.jit
def _mobius_bwd_kernel(X, Yv, C, G, DX, DY, DC, R, D, den_min, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """Adjoint of _mobius_fwd_kernel: DX, DY (R, D); DC (R,) float32."""
    den_min = tl.cast(den_min, tl.float32)  # inductor passes Python floats as fp64
    rows, rm, offs, m, x, y = _mobius_tile(X, Yv, R, D, BLOCK_R, BLOCK_D)
    g = tl.load(G + offs, mask=m, other=0.0).to(tl.float32)
    c = tl.load(C + rows, mask=rm, other=1.0)
    xy, x2, y2, a, b, den_raw = _mobius_terms(x, y, c)
    den = tl.maximum(den_raw, den_min)
    gx = tl.sum(g * x, axis=1) / den  # x . dnum
    gy = tl.sum(g * y, axis=1) / den  # y . dnum
    # g . out = (a gx + b gy); dden = -(g . out) / den, zero where the floor is active
    dden = tl.where(den_raw >= den_min, -(a * gx + b * gy) / den, 0.0)
    dnum = g / den[:, None]
    dx = (
        a[:, None] * dnum
        + (2.0 * c * gx + 2.0 * c * dden)[:, None] * y
        + (-2.0 * c * gy + 2.0 * c * c * y2 * dden)[:, None] * x
    )
    dy = (
        b[:, None] * dnum
        + (2.0 * c * gx + 2.0 * c * dden)[:, None] * x
        + (2.0 * c * gx + 2.0 * c * c * x2 * dden)[:, None] * y
    )
    dc = gx * (2.0 * xy + y2) - gy * x2 + dden * (2.0 * xy + 2.0 * c * x2 * y2)
    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=m)
    tl.store(DY + offs, dy.to(DY.dtype.element_ty), mask=m)
    tl.store(DC + rows, dc, mask=rm)


def _blocks(d: int) -> tuple[int, int, int]:
    bd = next_power_of_2(max(d, 1))
    br = max(1, min(64, 4096 // bd))
    warps = 4 if bd * br <= 4096 else 8
    return br, bd, warps


def _rowmap_fwd(x: torch.Tensor, c: torch.Tensor, log: bool, eps: float) -> torch.Tensor:
    """x: (R, D) contiguous; c: (R,) float32 -> exp0 (log=False) or log0 (log=True) of x: (R, D)."""
    r, d = x.shape
    y = torch.empty_like(x)
    br, bd, warps = _blocks(d)
    umax = 1.0 - eps
    launch(
        _rowmap_fwd_kernel,
        (cdiv(r, br),),
        x,
        c,
        y,
        r,
        d,
        MIN_NORM,
        umax,
        math.atanh(umax) if log else 0.0,
        LOG=log,
        BLOCK_R=br,
        BLOCK_D=bd,
        num_warps=warps,
    )
    return y


def _rowmap_bwd(
    x: torch.Tensor, c: torch.Tensor, g: torch.Tensor, log: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, g: (R, D) contiguous; c: (R,) float32 -> dx: (R, D), dc: (R,) float32."""
    r, d = x.shape
    dx = torch.empty_like(x)
    dc = torch.empty(r, device=x.device, dtype=torch.float32)
    br, bd, warps = _blocks(d)
    umax = 1.0 - eps
    launch(
        _rowmap_bwd_kernel,
        (cdiv(r, br),),
        x,
        c,
        g,
        dx,
        dc,
        r,
        d,
        MIN_NORM,
        umax,
        math.atanh(umax) if log else 0.0,
        LOG=log,
        BLOCK_R=br,
        BLOCK_D=bd,
        num_warps=warps,
    )
    return dx, dc


def _mobius_fwd(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x, y: (R, D) contiguous, same dtype; c: (R,) float32 -> x (+) y: (R, D)."""
    r, d = x.shape
    out = torch.empty_like(x)
    br, bd, warps = _blocks(d)
    launch(_mobius_fwd_kernel, (cdiv(r, br),), x, y, c, out, r, d, DEN_MIN, BLOCK_R=br, BLOCK_D=bd, num_warps=warps)
    return out


def _mobius_bwd(
    x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, y, g: (R, D) contiguous; c: (R,) float32 -> dx, dy: (R, D), dc: (R,) float32."""
    r, d = x.shape
    dx = torch.empty_like(x)
    dy = torch.empty_like(y)
    dc = torch.empty(r, device=x.device, dtype=torch.float32)
    br, bd, warps = _blocks(d)
    launch(_mobius_bwd_kernel, (cdiv(r, br),),
        x, y, c, g, dx, dy, dc, r, d, DEN_MIN, BLOCK_R=br, BLOCK_D=bd, num_warps=warps,
    )  # fmt: skip
    return dx, dy, dc


# Custom ops: dynamo and AOTAutograd see each launch as one opaque op (fake impls give the shapes).
# Their inputs are the flat (R, D) rows and the float32 per-row curvature (R,) the launchers need.


@torch.library.custom_op("phasebench::poincare_rowmap_fwd", mutates_args=())
def rowmap_fwd_op(x: torch.Tensor, c: torch.Tensor, log: bool, eps: float) -> torch.Tensor:
    """x: (R, D); c: (R,) float32 -> (R, D)."""
    return _rowmap_fwd(x, c, log, eps)


@torch.library.custom_op("phasebench::poincare_rowmap_bwd", mutates_args=())
def rowmap_bwd_op(
    x: torch.Tensor, c: torch.Tensor, g: torch.Tensor, log: bool, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, g: (R, D); c: (R,) float32 -> dx: (R, D), dc: (R,) float32."""
    return _rowmap_bwd(x, c, g, log, eps)


@torch.library.custom_op("phasebench::poincare_mobius_add_fwd", mutates_args=())
def mobius_add_fwd_op(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x, y: (R, D); c: (R,) float32 -> (R, D)."""
    return _mobius_fwd(x, y, c)


@torch.library.custom_op("phasebench::poincare_mobius_add_bwd", mutates_args=())
def mobius_add_bwd_op(
    x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, y, g: (R, D); c: (R,) float32 -> dx, dy: (R, D), dc: (R,) float32."""
    return _mobius_bwd(x, y, c, g)


@rowmap_fwd_op.register_fake
def _(x, c, log, eps):
    return torch.empty_like(x)


@rowmap_bwd_op.register_fake
def _(x, c, g, log, eps):
    return torch.empty_like(x), x.new_empty(x.shape[:1], dtype=torch.float32)


@mobius_add_fwd_op.register_fake
def _(x, y, c):
    return torch.empty_like(x)


@mobius_add_bwd_op.register_fake
def _(x, y, c, g):
    return torch.empty_like(x), torch.empty_like(y), x.new_empty(x.shape[:1], dtype=torch.float32)


def _rowmap_setup(ctx, inputs, output):
    x, c, log, eps = inputs
    ctx.save_for_backward(x, c)
    ctx.log, ctx.eps = log, eps


def _rowmap_backward(ctx, bwd, g):
    x, c = ctx.saved_tensors
    dx, dc = bwd(x, c, g.contiguous(), ctx.log, ctx.eps)
    return dx, dc, None, None


def _mobius_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _mobius_backward(ctx, bwd, g):
    x, y, c = ctx.saved_tensors
    return bwd(x, y, c, g.contiguous())


_rowmap = differentiable_op(rowmap_fwd_op, rowmap_bwd_op, _rowmap_setup, _rowmap_backward)
_mobius_add = differentiable_op(mobius_add_fwd_op, mobius_add_bwd_op, _mobius_setup, _mobius_backward)


def _curv_rows(c, x: torch.Tensor) -> torch.Tensor:
    """c (float, or tensor broadcastable to x[..., :1]) -> float32 per-row copy (R,).

    Differentiable: autograd sums the per-row dc back to c's shape (expand) and casts it to c's dtype.
    """
    if not torch.is_tensor(c):
        c = torch.tensor(float(c), device=x.device)
    return c.to(device=x.device, dtype=torch.float32).expand(*x.shape[:-1], 1).reshape(-1).contiguous()


def exp0_triton(v: torch.Tensor, c) -> torch.Tensor:
    """v: (..., D); c broadcastable to v[..., :1] -> (..., D) in v's dtype."""
    return _rowmap(v.reshape(-1, v.shape[-1]).contiguous(), _curv_rows(c, v), False, 0.0).view(v.shape)


def log0_triton(x: torch.Tensor, c, eps: float = BALL_EPS) -> torch.Tensor:
    """x: (..., D); |x| clamped to (1 - eps)/sqrt(c) -> (..., D) in x's dtype."""
    return _rowmap(x.reshape(-1, x.shape[-1]).contiguous(), _curv_rows(c, x), True, float(eps)).view(x.shape)


def mobius_add_triton(x: torch.Tensor, y: torch.Tensor, c) -> torch.Tensor:
    """x, y: (..., D) broadcastable -> x (+) y: (..., D) in their promoted dtype."""
    dtype = torch.promote_types(x.dtype, y.dtype)
    shape = torch.broadcast_shapes(x.shape, y.shape)
    # cast before expanding: the backward sums broadcast grads in the promoted dtype, then casts
    xe = x.to(dtype).expand(shape).reshape(-1, shape[-1]).contiguous()
    ye = y.to(dtype).expand(shape).reshape(-1, shape[-1]).contiguous()
    return _mobius_add(xe, ye, _curv_rows(c, xe.view(shape))).view(shape)


__all__ = ["exp0_triton", "log0_triton", "mobius_add_triton"]
