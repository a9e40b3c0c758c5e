"""Triton flash-style causal sliding-window attention scored by the Poincare distance.

q and k enter the ball with the Triton exp0 (kernels.poincare, per-head c); the kernels below then see
ball points x = exp0(q), y = exp0(k) and compute, for s in (t - W, t],

    d_ts = (2/sqrt c) artanh(z),  z = min(sqrt(max(c num2 / den, Z2_MIN)), 1 - eps)
    num2 = max(|x|^2 + |y|^2 - 2<x,y>, 0),  den = max(1 - 2c<x,y> + c^2 |x|^2 |y|^2, DEN_MIN)
    p = softmax_s(-scale_h d_ts),  o_t = sum_s p_ts v_s

Only BM x BN tiles of the Gram matrix exist (online softmax; no N x N tensor). The forward stores the
row log-sum-exp. Backward (flash-attention style, recomputing p from lse, on smaller tiles than the
forward: see `_cfg`): one kernel per key block for dk, dv and the per-program partial sums of dscale
and dc; one per query block for dq. The gradient through the distance uses only the Gram entries:

    gd = -scale * ds,  gz = gd 2/(sqrt c (1 - z^2)),  gz2 = gz / (2z),
    gnum2 = gz2 c / den,  gden = -gz2 z2 / den,
    g<x,y> = -2 gnum2 - 2c gden,  g|x|^2 = gnum2 + c^2 |y|^2 gden,  g|y|^2 = gnum2 + c^2 |x|^2 gden,
    gc = sum(-gd d / (2c) + gz2 num2 / den + gden (2c |x|^2|y|^2 - 2<x,y>))

(each clamp passes its gradient only where it is inactive, as torch.clamp does).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.poincare.naive import BALL_EPS
from kernels.poincare.triton import exp0_triton
from kernels.window_attn.naive import DEN_MIN, Z2_MIN  # noqa: F401  (the literals 1e-15, 1e-12 below)


@triton.jit
def _dist_tile(x2, y2, xy, c, umax):
    """Poincare distance from Gram entries; returns d and the pieces the backward needs."""
    num2_raw = x2[:, None] + y2[None, :] - 2.0 * xy
    num2 = tl.maximum(num2_raw, 0.0)
    den_raw = 1.0 - 2.0 * c * xy + c * c * x2[:, None] * y2[None, :]
    den = tl.maximum(den_raw, 1e-15)
    z2 = c * num2 / den
    z = tl.sqrt(tl.maximum(z2, 1e-12))
    zc = tl.minimum(z, umax)
    d = tl.log((1.0 + zc) / (1.0 - zc)) / tl.sqrt(c)
    return d, num2_raw, num2, den_raw, den, z2, z


@triton.jit
def _window_fwd_kernel(
    X,
    Y,
    V,
    C,
    S,
    OUT,
    LSE,
    N,
    H,
    WINDOW,
    umax,
    D: tl.constexpr,
    DV: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
):
    """X, Y: (BH, N, D) ball points; V, OUT: (BH, N, DV); C, S: (H,) float32; LSE: (BH, N). Grid (cdiv(N, BM), BH)."""
    umax = tl.cast(umax, tl.float32)  # inductor passes Python floats as fp64
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    h = i_bh % H
    base = i_bh.to(tl.int64) * N
    c = tl.load(C + h)
    sc = tl.load(S + h)
    offs_m = i_m * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    offs_dv = tl.arange(0, BDV)
    mm = offs_m < N
    x = tl.load(X + (base + offs_m)[:, None] * D + offs_d[None, :], mask=mm[:, None] & (offs_d < D)[None, :], other=0.0)
    xf = x.to(tl.float32)
    x2 = tl.sum(xf * xf, axis=1)
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, BDV], dtype=tl.float32)
    lo = tl.maximum(i_m * BM - WINDOW + 1, 0)
    lo = (lo // BN) * BN
    hi = tl.minimum((i_m + 1) * BM, N)
    for start in range(lo, hi, BN):
        offs_n = start + tl.arange(0, BN)
        nm = offs_n < N
        y = tl.load(
            Y + (base + offs_n)[:, None] * D + offs_d[None, :], mask=nm[:, None] & (offs_d < D)[None, :], other=0.0
        )
        vb = tl.load(
            V + (base + offs_n)[:, None] * DV + offs_dv[None, :], mask=nm[:, None] & (offs_dv < DV)[None, :], other=0.0
        )
        yf = y.to(tl.float32)
        y2 = tl.sum(yf * yf, axis=1)
        xy = tl.dot(x, tl.trans(y), input_precision=PREC)
        d, _, _, _, _, _, _ = _dist_tile(x2, y2, xy, c, umax)
        valid = (offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] > offs_m[:, None] - WINDOW) & nm[None, :]
        score = tl.where(valid, -sc * d, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(score, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(score - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(vb.dtype), vb, input_precision=PREC)
        m_i = m_new
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    o = acc / l_safe[:, None]
    tl.store(
        OUT + (base + offs_m)[:, None] * DV + offs_dv[None, :],
        o.to(OUT.dtype.element_ty),
        mask=mm[:, None] & (offs_dv < DV)[None, :],
    )
    tl.store(LSE + base + offs_m, m_i + tl.log(l_safe), mask=mm)


@triton.jit
def _score_grads(x2, y2, xy, c, sc, umax, ds):
    """From ds (grad wrt score) to the grads wrt <x,y>, |x|^2, |y|^2 and partial sums for scale and c."""
    d, num2_raw, num2, den_raw, den, z2, z = _dist_tile(x2, y2, xy, c, umax)
    gd = -sc * ds
    gscale = tl.sum(tl.sum(-ds * d, axis=1), axis=0)
    sqc = tl.sqrt(c)
    gz = tl.where(z <= umax, gd * 2.0 / (sqc * (1.0 - z * z)), 0.0)
    gz2 = tl.where(z2 >= 1e-12, gz * 0.5 / z, 0.0)
    gnum2 = tl.where(num2_raw >= 0.0, gz2 * c / den, 0.0)
    gden = tl.where(den_raw >= 1e-15, -gz2 * z2 / den, 0.0)
    gxy = -2.0 * gnum2 - 2.0 * c * gden
    gx2 = gnum2 + c * c * y2[None, :] * gden
    gy2 = gnum2 + c * c * x2[:, None] * gden
    gc_t = -gd * d / (2.0 * c) + gz2 * num2 / den + gden * (2.0 * c * x2[:, None] * y2[None, :] - 2.0 * xy)
    gc = tl.sum(tl.sum(gc_t, axis=1), axis=0)
    return gxy, gx2, gy2, gscale, gc


@triton.jit
def _window_bwd_dkv_kernel(
    X,
    Y,
    V,
    C,
    S,
    DO,
    LSE,
    DELTA,
    DY,
    DVo,
    DSC,
    DC,
    N,
    H,
    WINDOW,
    umax,
    D: tl.constexpr,
    DV: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
):
    """Per key block: DY (BH, N, D) float32, DVo (BH, N, DV), DSC/DC (BH, n_blocks) partial sums."""
    umax = tl.cast(umax, tl.float32)  # inductor passes Python floats as fp64
    i_n = tl.program_id(0)
    i_bh = tl.program_id(1)
    h = i_bh % H
    base = i_bh.to(tl.int64) * N
    c = tl.load(C + h)
    sc = tl.load(S + h)
    offs_n = i_n * BN + tl.arange(0, BN)
    offs_d = tl.arange(0, BD)
    offs_dv = tl.arange(0, BDV)
    nm = offs_n < N
    dmask = (offs_d < D)[None, :]
    dvmask = (offs_dv < DV)[None, :]
    y = tl.load(Y + (base + offs_n)[:, None] * D + offs_d[None, :], mask=nm[:, None] & dmask, other=0.0)
    vb = tl.load(V + (base + offs_n)[:, None] * DV + offs_dv[None, :], mask=nm[:, None] & dvmask, other=0.0)
    yf = y.to(tl.float32)
    y2 = tl.sum(yf * yf, axis=1)
    dy = tl.zeros([BN, BD], dtype=tl.float32)
    dv = tl.zeros([BN, BDV], dtype=tl.float32)
    gy2_acc = tl.zeros([BN], dtype=tl.float32)
    gscale = 0.0
    gc = 0.0
    lo = (i_n * BN // BM) * BM
    hi = tl.minimum(i_n * BN + BN + WINDOW - 1, N)
    for start in range(lo, hi, BM):
        offs_m = start + tl.arange(0, BM)
        mm = offs_m < N
        x = tl.load(X + (base + offs_m)[:, None] * D + offs_d[None, :], mask=mm[:, None] & dmask, other=0.0)
        do = tl.load(DO + (base + offs_m)[:, None] * DV + offs_dv[None, :], mask=mm[:, None] & dvmask, other=0.0)
        lse = tl.load(LSE + base + offs_m, mask=mm, other=0.0)
        delta = tl.load(DELTA + base + offs_m, mask=mm, other=0.0)
        xf = x.to(tl.float32)
        x2 = tl.sum(xf * xf, axis=1)
        xy = tl.dot(x, tl.trans(y), input_precision=PREC)
        d, _, _, _, _, _, _ = _dist_tile(x2, y2, xy, c, umax)
        valid = (
            (offs_n[None, :] <= offs_m[:, None])
            & (offs_n[None, :] > offs_m[:, None] - WINDOW)
            & nm[None, :]
            & mm[:, None]
        )
        p = tl.where(valid, tl.exp(-sc * d - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
        dp = tl.dot(do, tl.trans(vb), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        gxy, gx2, gy2, gs, gcc = _score_grads(x2, y2, xy, c, sc, umax, ds)
        gscale += gs
        gc += gcc
        dy += tl.dot(tl.trans(gxy), xf, input_precision=PREC)
        gy2_acc += tl.sum(gy2, axis=0)
    dy += 2.0 * gy2_acc[:, None] * yf
    tl.store(DY + (base + offs_n)[:, None] * D + offs_d[None, :], dy, mask=nm[:, None] & dmask)
    tl.store(
        DVo + (base + offs_n)[:, None] * DV + offs_dv[None, :], dv.to(DVo.dtype.element_ty), mask=nm[:, None] & dvmask
    )
    nb = tl.num_programs(0)
    tl.store(DSC + i_bh * nb + i_n, gscale)
    tl.store(DC + i_bh * nb + i_n, gc)


@triton.jit
def _window_bwd_dq_kernel(
    X,
    Y,
    V,
    C,
    S,
    DO,
    LSE,
    DELTA,
    DX,
    N,
    H,
    WINDOW,
    umax,
    D: tl.constexpr,
    DV: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
):
    """Per query block: DX (BH, N, D) float32."""
    umax = tl.cast(umax, tl.float32)  # inductor passes Python floats as fp64
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    h = i_bh % H
    base = i_bh.to(tl.int64) * N
    c = tl.load(C + h)
    sc = tl.load(S + h)
    offs_m = i_m * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    offs_dv = tl.arange(0, BDV)
    mm = offs_m < N
    dmask = (offs_d < D)[None, :]
    dvmask = (offs_dv < DV)[None, :]
    x = tl.load(X + (base + offs_m)[:, None] * D + offs_d[None, :], mask=mm[:, None] & dmask, other=0.0)
    do = tl.load(DO + (base + offs_m)[:, None] * DV + offs_dv[None, :], mask=mm[:, None] & dvmask, other=0.0)
    lse = tl.load(LSE + base + offs_m, mask=mm, other=0.0)
    delta = tl.load(DELTA + base + offs_m, mask=mm, other=0.0)
    xf = x.to(tl.float32)
    x2 = tl.sum(xf * xf, axis=1)
    dx = tl.zeros([BM, BD], dtype=tl.float32)
    gx2_acc = tl.zeros([BM], dtype=tl.float32)
    lo = tl.maximum(i_m * BM - WINDOW + 1, 0)
    lo = (lo // BN) * BN
    hi = tl.minimum((i_m + 1) * BM, N)
    for start in range(lo, hi, BN):
        offs_n = start + tl.arange(0, BN)
        nm = offs_n < N
        y = tl.load(Y + (base + offs_n)[:, None] * D + offs_d[None, :], mask=nm[:, None] & dmask, other=0.0)
        vb = tl.load(V + (base + offs_n)[:, None] * DV + offs_dv[None, :], mask=nm[:, None] & dvmask, other=0.0)
        yf = y.to(tl.float32)
        y2 = tl.sum(yf * yf, axis=1)
        xy = tl.dot(x, tl.trans(y), input_precision=PREC)
        d, _, _, _, _, _, _ = _dist_tile(x2, y2, xy, c, umax)
        valid = (
            (offs_n[None, :] <= offs_m[:, None])
            & (offs_n[None, :] > offs_m[:, None] - WINDOW)
            & nm[None, :]
            & mm[:, None]
        )
        p = tl.where(valid, tl.exp(-sc * d - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(vb), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        gxy, gx2, gy2, gs, gcc = _score_grads(x2, y2, xy, c, sc, umax, ds)
        dx += tl.dot(gxy, yf, input_precision=PREC)
        gx2_acc += tl.sum(gx2, axis=1)
    dx += 2.0 * gx2_acc[:, None] * xf
    tl.store(DX + (base + offs_m)[:, None] * D + offs_d[None, :], dx, mask=mm[:, None] & dmask)


def _cfg(d, dv, dtype, window, block_m, block_n, backward=False):
    """Tiles: the backward keeps ~20 fp32 score tiles live, and at the forward's 64 x 64 ptxas spilled
    1,552 (dk, dv) and 808 (dq) bytes per thread to local memory (sm_90, head dim 64, bf16); at 32 x 32
    with tensor-core dots nothing spills (tests/kernels/test_shared_memory.py checks it)."""
    BD = max(16, triton.next_power_of_2(d))
    BDV = max(16, triton.next_power_of_2(dv))
    wide = max(BD, BDV) > 64
    bm = block_m or ((16 if wide else 32) if backward else (32 if wide else 64))
    bn = block_n or bm
    prec = "ieee" if dtype == torch.float32 else "tf32"
    return BD, BDV, bm, bn, prec


def _launch_fwd(x, y, v, c32, s32, window, block_m, block_n):
    """x, y: (B, H, N, D) ball points; v: (B, H, N, DV); c32, s32: (H,) float32 (all contiguous)
    -> o: (B, H, N, DV) in v's dtype, lse: (B, H, N) float32."""
    Bsz, H, n, d = x.shape
    dv = v.shape[-1]
    BD, BDV, bm, bn, prec = _cfg(d, dv, x.dtype, window, block_m, block_n)
    o = torch.empty(Bsz, H, n, dv, device=v.device, dtype=v.dtype)
    lse = torch.empty(Bsz, H, n, device=v.device, dtype=torch.float32)
    _window_fwd_kernel[(triton.cdiv(n, bm), Bsz * H)](
        x, y, v, c32, s32, o, lse, n, H, window, 1.0 - BALL_EPS, D=d, DV=dv, BM=bm, BN=bn, BD=BD, BDV=BDV, PREC=prec
    )
    return o, lse


def _launch_bwd(do, delta, x, y, v, c32, s32, lse, window, block_m, block_n):
    """do: (B, H, N, DV) in v's dtype; delta = sum(do * o, -1): (B, H, N) float32; the rest as the forward's
    -> dx, dy: (B, H, N, D) float32, dv: like v, dc, dscale: (H,) float32."""
    Bsz, H, n, d = x.shape
    dv_ = v.shape[-1]
    BD, BDV, bm, bn, prec = _cfg(d, dv_, x.dtype, window, block_m, block_n, backward=True)
    dx = torch.empty(Bsz, H, n, d, device=x.device, dtype=torch.float32)
    dy = torch.empty_like(dx)
    dv = torch.empty_like(v)
    nkb = triton.cdiv(n, bn)
    dsc = torch.empty(Bsz * H, nkb, device=x.device, dtype=torch.float32)
    dc = torch.empty_like(dsc)
    umax = 1.0 - BALL_EPS
    args = dict(D=d, DV=dv_, BM=bm, BN=bn, BD=BD, BDV=BDV, PREC=prec)
    _window_bwd_dkv_kernel[(nkb, Bsz * H)](
        x, y, v, c32, s32, do, lse, delta, dy, dv, dsc, dc, n, H, window, umax, **args
    )
    _window_bwd_dq_kernel[(triton.cdiv(n, bm), Bsz * H)](
        x, y, v, c32, s32, do, lse, delta, dx, n, H, window, umax, **args
    )
    return dx, dy, dv, dc.view(Bsz, H, nkb).sum((0, 2)), dsc.view(Bsz, H, nkb).sum((0, 2))


# Custom ops: dynamo and AOT autograd see each launch as one opaque op (fake tensors give the shapes).


@torch.library.custom_op("phasebench::window_hyp_attn_fwd", mutates_args=())
def window_hyp_attn_fwd(
    x: torch.Tensor,
    y: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    scale: torch.Tensor,
    window: int,
    block_m: int | None,
    block_n: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, y: (B, H, N, D) ball points (one dtype); v: (B, H, N, DV); c, scale: (H,) float32; all contiguous
    -> o: (B, H, N, DV) in v's dtype, lse: (B, H, N) float32."""
    return _launch_fwd(x, y, v, c, scale, window, block_m, block_n)


@torch.library.custom_op("phasebench::window_hyp_attn_bwd", mutates_args=())
def window_hyp_attn_bwd(
    do: torch.Tensor,
    delta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    scale: torch.Tensor,
    lse: torch.Tensor,
    window: int,
    block_m: int | None,
    block_n: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """do: (B, H, N, DV) in v's dtype, delta: (B, H, N) float32; the rest as window_hyp_attn_fwd's, all
    contiguous -> dx, dy: (B, H, N, D) float32, dv: like v, dc, dscale: (H,) float32."""
    return _launch_bwd(do, delta, x, y, v, c, scale, lse, window, block_m, block_n)


@window_hyp_attn_fwd.register_fake
def _(x, y, v, c, scale, window, block_m, block_n):
    o = v.new_empty((*x.shape[:-1], v.shape[-1]))
    return o, x.new_empty(x.shape[:-1], dtype=torch.float32)


@window_hyp_attn_bwd.register_fake
def _(do, delta, x, y, v, c, scale, lse, window, block_m, block_n):
    dx = x.new_empty(x.shape, dtype=torch.float32)
    return dx, torch.empty_like(dx), torch.empty_like(v), torch.empty_like(c), torch.empty_like(scale)


def _fwd_setup_context(ctx, inputs, output):
    x, y, v, c, scale, window, block_m, block_n = inputs
    o, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(x, y, v, c, scale, o, lse)
    ctx.meta = (window, block_m, block_n)


def _fwd_backward(ctx, do, _dlse):
    x, y, v, c, scale, o, lse = ctx.saved_tensors
    window, block_m, block_n = ctx.meta
    do = do.to(v.dtype).contiguous()
    delta = (do.float() * o.float()).sum(-1)
    dx, dy, dv, dc, dsc = window_hyp_attn_bwd(do, delta, x, y, v, c, scale, lse, window, block_m, block_n)
    return dx.to(x.dtype), dy.to(y.dtype), dv, dc, dsc, None, None, None


window_hyp_attn_fwd.register_autograd(_fwd_backward, setup_context=_fwd_setup_context)


def window_hyp_attn_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    scale: torch.Tensor,
    window: int = 64,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """q, k, v: (B, H, N, D) tangent vectors; c, scale: (H,) > 0 -> o: (B, H, N, D) in v's dtype."""
    if q.shape[-2] == 0:
        return v.clone()
    H = q.shape[1]
    ch = c.reshape(1, H, 1, 1)
    x = exp0_triton(q, ch).contiguous()
    y = exp0_triton(k.to(q.dtype), ch).contiguous()
    # the float32 casts carry the grads of c and scale back to their own dtype
    c32, s32 = c.float().contiguous(), scale.float().contiguous()
    o, _ = window_hyp_attn_fwd(x, y, v.contiguous(), c32, s32, int(window), block_m, block_n)
    return o
