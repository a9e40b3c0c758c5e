"""Triton flash-style causal sliding-window attention scored by the Poincare distance.

q and k enter the ball by exp0 (per-head c): k by kernels.poincare's row map, q inside the forward kernel as it
loads its query block (once a program, outside the key loop: mapping each key block there too would cost ~40
registers a thread in the loop), which stores x = exp0(q) for the backward. The backward kernels read the ball
points x, y (in q's dtype). exp0's backward takes the float32 dx and dy in the backward kernels' epilogues.
With a = |x|^2, b = |y|^2, rho = 1/(1 - c a), sigma = 1/(1 - c b) (per row and per column; 1 - c a floored at
1e-15), for s in (t - W, t]:

    tau = c (a + b - 2<x,y>) rho sigma, clamped to [Z2_MIN, umax^2/(1 - umax^2)]
    d_ts = (2/sqrt c) asinh(sqrt tau) = (1/sqrt c) ln(1 + 2 tau + 2 sqrt(tau (1 + tau)))
    p = softmax_s(-scale_h d_ts),  o_t = sum_s p_ts v_s

This is naive.pair_dist with its clamps: den = c num2 + (1 - c a)(1 - c b), so z^2 = c num2/den = tau/(1 + tau)
(tau needs no division per pair; the softmax runs in base 2). Only tiles of the Gram matrix exist (online
softmax, no N x N tensor); the forward stores the row log-sum-exp.

Backward: delta = sum(do * o, -1) in one pass (kernels/row_dot.py: no float32 copies of do and o), then two
kernels, as FlashAttention-2's, both recomputing p from the log-sum-exp: one program per (key block of BK,
batch * head) walks the query blocks that reach it and stores dy and dv once; one program per (query block of
BQ, batch * head) walks the key blocks in its window (as the forward) and stores dx once. Each pair is scored
twice (once per kernel), but no dx is read back: no atomics, deterministic. A program holds whole rows of dx
(dy) when it stores them, so it loads the tangent rows of q (k) and stores dq (dk) in their dtype through
exp0's backward: no float32 dx goes to memory. (A one-kernel backward that scored each pair once and summed dx
in place over strips of key blocks, side buffers between strips, ran 3-8 % slower on the H200 at 253-255
registers: run 15 of results/kernels/README.md. It is gone since.)

With g = ds / sqrt(tau (1 + tau)) (0 where tau is clamped) and kappa = -2 scale sqrt c:

    dx_t = kappa rho_t (x_t sum_s g (sigma_s + tau) - sum_s g sigma_s y_s)
    dy_s = kappa sigma_s (y_s sum_t g (rho_t + tau) - sum_t g rho_t x_t)
    dscale = -sum ds d,  dc = (sum_t x_t . dx_t + sum_s y_s . dy_s - scale dscale) / (2c)

(dc because d is c^(-1/2) times a function of c a, c b and c <x,y> alone). Each program stores its partial
sums of dscale and dc (the query programs dscale and the x . dx part of dc, the key programs the y . dy part,
each with its rows' dc of exp0), which the launcher sums.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from kernels.backend import triton_interpreted
from kernels.poincare.naive import BALL_EPS, MIN_NORM
from kernels.poincare.triton import _curv_rows, _exp0_bwd_rows, _exp0_rows, _rowmap_fwd
from kernels.row_dot import row_dot
from kernels.window_attn.naive import Z2_MIN  # noqa: F401  (the literal 1e-12 below)

#: the interpreter has no libdevice: _log2 takes tl.math.log2 there
INTERPRETED: tl.constexpr = tl.constexpr(triton_interpreted())


@triton.jit
def _tile(P, rows, N, W: tl.constexpr, BW: tl.constexpr):
    """Pointers to rows `rows` (below N) of a (N, W) row-major matrix at P, and their mask (columns padded to BW)."""
    cols = tl.arange(0, BW)
    ptrs = P + rows[:, None] * W + cols[None, :]
    if W == BW:
        mask = (rows < N)[:, None]
    else:
        mask = (rows < N)[:, None] & (cols < W)[None, :]
    return ptrs, mask


@triton.jit
def _load(P, rows, N, W: tl.constexpr, BW: tl.constexpr):
    ptrs, mask = _tile(P, rows, N, W, BW)
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit
def _reload(P, rows, N, W: tl.constexpr, BW: tl.constexpr):
    """_load as float32, for a tile read again after a loop rather than held through it in registers (ptxas
    held a (64, 64) float32 tile through the backward kernels' loops: 60-70 registers); volatile, or the compiler
    merges it with the first load."""
    ptrs, mask = _tile(P, rows, N, W, BW)
    return tl.load(ptrs, mask=mask, other=0.0, volatile=True).to(tl.float32)


@triton.jit
def _store(P, rows, N, val, W: tl.constexpr, BW: tl.constexpr):
    ptrs, mask = _tile(P, rows, N, W, BW)
    tl.store(ptrs, val.to(P.dtype.element_ty), mask=mask)


@triton.jit
def _load_ball(P, rows, N, c, min_norm, W: tl.constexpr, BW: tl.constexpr):
    """Tangent rows at P -> their ball points by exp0, in float32 math, rounded to P's dtype (as stored)."""
    t = _load(P, rows, N, W, BW)
    return _exp0_rows(t.to(tl.float32), c, min_norm).to(P.dtype.element_ty)


@triton.jit
def _norms(t, c):
    """Rows of a tile -> float32 tile, |row|^2 and 1/(1 - c |row|^2) (denominator floored at 1e-15)."""
    tf = t.to(tl.float32)
    n2 = tl.sum(tf * tf, axis=1)
    return tf, n2, 1.0 / tl.maximum(1.0 - c * n2, 1e-15)


@triton.jit
def _log2(x, FAST: tl.constexpr):
    """FAST: log2 by the hardware's approximation (lg2.approx, one MUFU op, ~2^-22 absolute error on [1, 2)), where
    float32 tl.math.log2 inlines libdevice's exact __nv_log2f: ~30 instructions with a branch, once per pair. The
    backward kernels take it. The forward does not: with it, sm_90 gives the bf16 forward at head dim 64 164
    registers instead of 127 (3 programs an SM instead of 4) and the float32 one 6.6 KB of spill."""
    if FAST and not INTERPRETED:
        return libdevice.fast_log2f(x)
    else:
        return tl.math.log2(x)


@triton.jit
def _tau_log(s, a, rc, b, sg, tmax, FAST: tl.constexpr):
    """Gram tile s = <x,y>, rows a = |x|^2, rc = c rho, columns b = |y|^2, sg = sigma -> tau, its clamp tc,
    1/sqrt(tc (1 + tc)) and log2(1 + 2 tc + 2 sqrt(tc (1 + tc))) = sqrt(c) d / ln 2."""
    tau = (rc[:, None] * (b[None, :] - 2.0 * s) + (rc * a)[:, None]) * sg[None, :]
    tc = tl.minimum(tl.maximum(tau, 1e-12), tmax)
    t = tc * tc + tc
    rq = tl.math.rsqrt(t)
    return tau, tc, rq, _log2(1.0 + 2.0 * (tc + t * rq), FAST)


@triton.jit
def _head_consts(C, S, h, umax):
    """Curvature, scale, the clamp of tau (z <= umax), and the score per log2 unit, -scale/sqrt c."""
    umax = tl.cast(umax, tl.float32)  # inductor passes Python floats as fp64
    c = tl.load(C + h)
    sc = tl.load(S + h)
    tmax = umax * umax / ((1.0 - umax) * (1.0 + umax))
    return c, sc, tmax, -sc / tl.sqrt(c)


@triton.jit
def _keys_in_window(i, N, WINDOW, BQ: tl.constexpr, BK: tl.constexpr):
    """Query block i of BQ -> the first row of the first key block of BK in its windows and the end of its keys
    (the forward's and the dq kernel's loop bounds, stepped by BK)."""
    lo = tl.maximum(i * BQ - WINDOW + 1, 0)
    return (lo // BK) * BK, tl.minimum((i + 1) * BQ, N)


@triton.jit
def _queries_reaching(j, N, WINDOW, BQ: tl.constexpr, BK: tl.constexpr):
    """Key block j of BK -> the first and one past the last query block of BQ whose windows reach it."""
    return (j * BK) // BQ, tl.minimum(((j + 1) * BK + tl.minimum(WINDOW, N) - 2) // BQ + 1, tl.cdiv(N, BQ))


@triton.jit
def _window_fwd_kernel(
    Q,
    Y,
    V,
    C,
    S,
    XO,
    OUT,
    LSE,
    N,
    H,
    WINDOW,
    umax,
    min_norm,
    D: tl.constexpr,
    DV: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
):
    """Q: (BH, N, D) tangent queries, mapped by exp0 as they load, XO their ball points (stored for the backward);
    Y: (BH, N, D) ball points of the keys; V, OUT: (BH, N, DV); C, S: (H,) float32; LSE: (BH, N). Grid
    (cdiv(N, BM), BH)."""
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    row0 = i_bh.to(tl.int64) * N
    Q += row0 * D
    Y += row0 * D
    V += row0 * DV
    c, sc, tmax, kk = _head_consts(C, S, i_bh % H, umax)
    offs_m = i_m * BM + tl.arange(0, BM)
    x = _load_ball(Q, offs_m, N, c, min_norm, D, BD)
    _store(XO + row0 * D, offs_m, N, x, D, BD)
    xf, a, rho = _norms(x, c)  # no name is reassigned in the key loop (it would be loop-carried)
    rc = c * rho
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, BDV], dtype=tl.float32)
    lo, hi = _keys_in_window(i_m, N, WINDOW, BM, BN)
    for start in range(lo, hi, BN):
        offs_n = start + tl.arange(0, BN)
        y = _load(Y, offs_n, N, D, BD)
        vb = _load(V, offs_n, N, DV, BDV)
        yf, b, sg = _norms(y, c)
        s = tl.dot(x, tl.trans(y), input_precision=PREC)
        tau, tc, rq, lg = _tau_log(s, a, rc, b, sg, tmax, False)
        # keys past N meet only rows past N (s <= t), which are not stored
        diff = offs_m[:, None] - offs_n[None, :]
        score = tl.where((diff >= 0) & (diff < WINDOW), kk * lg, float("-inf"))  # log2 units
        m_new = tl.maximum(m_i, tl.max(score, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_safe)
        p = tl.math.exp2(score - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(vb.dtype), vb, input_precision=PREC)
        m_i = m_new
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    _store(OUT + row0 * DV, offs_m, N, acc / l_safe[:, None], DV, BDV)
    tl.store(LSE + row0 + offs_m, (m_i + tl.math.log2(l_safe)) * 0.6931471805599453, mask=offs_m < N)


@triton.jit
def _keys(Y, V, offs_n, N, c, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr):
    """Key block at rows offs_n -> y, float32 y, |y|^2, sigma, its values."""
    y = _load(Y, offs_n, N, D, BD)
    yf, b, sg = _norms(y, c)
    return y, yf, b, sg, _load(V, offs_n, N, DV, BDV)


@triton.jit
def _queries(X, DO, LSE, DELTA, offs_m, N, c, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr):
    """Query block at rows offs_m -> x, float32 x, |x|^2, rho, do, the log-sum-exp in base 2, delta (rows past N:
    do = delta = 0, so their ds = 0, and p is finite)."""
    mm = offs_m < N
    x = _load(X, offs_m, N, D, BD)
    xf, a, rho = _norms(x, c)
    do = _load(DO, offs_m, N, DV, BDV)
    lse2 = tl.load(LSE + offs_m, mask=mm, other=0.0) * 1.4426950408889634
    return x, xf, a, rho, do, lse2, tl.load(DELTA + offs_m, mask=mm, other=0.0)


@triton.jit
def _ds(s, dp, a, rc, b, sg, lse2, delta, valid, kk, tmax):
    """A backward tile, either way round: the Gram tile s and do . v tile dp (both dots come first: no tile of
    the chain below is held through a dot), _tau_log's rows and columns, the query's lse2 and delta broadcast
    along the tile, valid the window -> p, ds log2(...), g = ds / sqrt(tc (1 + tc)) (0 where tau is clamped: no
    gradient through the clamps), g tc."""
    tau, tc, rs, lg = _tau_log(s, a, rc, b, sg, tmax, True)
    p = tl.where(valid, tl.math.exp2(kk * lg - lse2), 0.0)
    ds = p * (dp - delta)
    g = ds * tl.where(tau == tc, rs, 0.0)
    return p, ds * lg, g, g * tc


@triton.jit
def _dkdv_tile(
    i,
    X,
    DO,
    LSE,
    DELTA,
    N,
    WINDOW,
    c,
    kk,
    tmax,
    y,
    b,
    sg,
    vb,
    offs_n,
    dk,
    dv,
    rk,
    D: tl.constexpr,
    DV: tl.constexpr,
    BQ: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
):
    """Tile (query block i, the key block y at offs_n), held transposed (keys x queries). Accumulates for the
    key block sum_t g rho_t x_t (dk), dv and sum_t g (rho_t + tau) (rk); returns them and, for a dx, ds log2(...),
    g, g tau, float32 x and rho."""
    offs_m = i * BQ + tl.arange(0, BQ)
    x, xf, a, rho, do, lse2, delta = _queries(X, DO, LSE, DELTA, offs_m, N, c, D, DV, BD, BDV)
    s = tl.dot(y, tl.trans(x), input_precision=PREC)
    dp = tl.dot(vb, tl.trans(do), input_precision=PREC)
    diff = offs_m[None, :] - offs_n[:, None]
    valid = (diff >= 0) & (diff < WINDOW)
    p, dsl, g, h = _ds(s, dp, b, c * sg, a, rho, lse2[None, :], delta[None, :], valid, kk, tmax)
    gr = g * rho[None, :]
    rk += tl.sum(gr + h, axis=1)
    dv = tl.dot(p.to(do.dtype), do, dv, input_precision=PREC)
    dk = tl.dot(gr.to(x.dtype), x, dk, input_precision=PREC)
    return dk, dv, rk, dsl, g, h, xf, rho


@triton.jit
def _key_grad(yf, kappa, sg, dk, rk):
    """A key block's dy, float32, from float32 y and its accumulators dk (sum_t g rho_t x_t) and rk."""
    return (kappa * sg)[:, None] * (yf * rk[:, None] - dk)


@triton.jit
def _key_out(DY, DVo, offs_n, N, yf, kappa, sg, dk, dv, rk, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr,
             BDV: tl.constexpr):  # fmt: skip
    """Store a key block's dy (from float32 y, dk, rk) and dv; returns y . dy per key."""
    dkf = _key_grad(yf, kappa, sg, dk, rk)
    _store(DY, offs_n, N, dkf, D, BD)
    _store(DVo, offs_n, N, dv, DV, BDV)
    return tl.sum(yf * dkf, axis=1)


@triton.jit
def _partials(DSC, DC, gvec, t, c, sc, tmap):
    """Store a program's partial sums: of dscale, -(ln 2 / sqrt c) sum gvec, and of dc, (t - scale dscale) / 2c
    + tmap (t: its sum of x . dx and y . dy; tmap: the dc of the exp0 backward it ran, 0 if none)."""
    gscale = -0.6931471805599453 / tl.sqrt(c) * tl.sum(gvec, axis=0)
    tl.store(DSC, gscale)
    tl.store(DC, (t - sc * gscale) / (2.0 * c) + tmap)


@triton.jit
def _window_bwd_dkdv_kernel(
    X,
    Y,
    V,
    C,
    S,
    DO,
    LSE,
    DELTA,
    K,
    DKo,
    DVo,
    DC,
    N,
    H,
    WINDOW,
    umax,
    min_norm,
    D: tl.constexpr,
    DV: tl.constexpr,
    BQ: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
):
    """Keys. K: (BH, N, D) the tangent keys (y = exp0(K)); DKo: their gradient, like K, through exp0's
    backward here; DVo: (BH, N, DV); DC: (BH, cdiv(N, BK)) partial sums of y . dy / 2c and of exp0's dc. Grid
    (cdiv(N, BK), BH): key block j of BK against the query blocks of BQ that reach it."""
    j = tl.program_id(0)
    i_bh = tl.program_id(1)
    row0 = i_bh.to(tl.int64) * N
    X += row0 * D
    DO += row0 * DV
    LSE += row0
    DELTA += row0
    c, sc, tmax, kk = _head_consts(C, S, i_bh % H, umax)
    offs_n = j * BK + tl.arange(0, BK)
    y, _yf, b, sg, vb = _keys(Y + row0 * D, V + row0 * DV, offs_n, N, c, D, DV, BD, BDV)
    dk = tl.zeros([BK, BD], dtype=tl.float32)
    dv = tl.zeros([BK, BDV], dtype=tl.float32)
    rk = tl.zeros([BK], dtype=tl.float32)
    i0, i1 = _queries_reaching(j, N, WINDOW, BQ, BK)
    for i in range(i0, i1):
        dk, dv, rk, _dsl, _g, _h, _xf, _rho = _dkdv_tile(
            i, X, DO, LSE, DELTA, N, WINDOW, c, kk, tmax, y, b, sg, vb, offs_n, dk, dv, rk, D, DV, BQ, BD, BDV, PREC
        )
    _store(DVo + row0 * DV, offs_n, N, dv, DV, BDV)
    yf = _reload(Y + row0 * D, offs_n, N, D, BD)
    dy = _key_grad(yf, -2.0 * sc * tl.sqrt(c), sg, dk, rk)
    tkey = tl.sum(tl.sum(yf * dy, axis=1), axis=0)
    dkt, dck = _exp0_bwd_rows(_reload(K + row0 * D, offs_n, N, D, BD), dy, c, min_norm)
    _store(DKo + row0 * D, offs_n, N, dkt, D, BD)
    tl.store(DC + i_bh * tl.num_programs(0) + j, tkey / (2.0 * c) + tl.sum(dck, axis=0))


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
    Q,
    DQo,
    DSC,
    DC,
    N,
    H,
    WINDOW,
    umax,
    min_norm,
    D: tl.constexpr,
    DV: tl.constexpr,
    BQ: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
):
    """Queries. Q: (BH, N, D) the tangent queries (x = exp0(Q)); DQo: their gradient, like Q, stored once,
    through exp0's backward here; DSC, DC: (BH, cdiv(N, BQ)) partial sums of dscale and of
    (x . dx - scale dscale) / 2c plus exp0's dc. Grid (cdiv(N, BQ), BH): query block i of BQ against the key
    blocks of BK in its window, as the forward."""
    i = tl.program_id(0)
    i_bh = tl.program_id(1)
    row0 = i_bh.to(tl.int64) * N
    Y += row0 * D
    V += row0 * DV
    c, sc, tmax, kk = _head_consts(C, S, i_bh % H, umax)
    offs_m = i * BQ + tl.arange(0, BQ)
    x, _xf, a, rho, do, lse2, delta = _queries(
        X + row0 * D, DO + row0 * DV, LSE + row0, DELTA + row0, offs_m, N, c, D, DV, BD, BDV
    )
    rc = c * rho
    gvec = tl.zeros([BQ], dtype=tl.float32)
    rq = tl.zeros([BQ], dtype=tl.float32)  # sum_s g (sigma_s + tau)
    acc = tl.zeros([BQ, BD], dtype=tl.float32)  # sum_s g sigma_s y_s
    lo, hi = _keys_in_window(i, N, WINDOW, BQ, BK)
    for start in range(lo, hi, BK):
        offs_n = start + tl.arange(0, BK)
        y, yf, b, sg, vb = _keys(Y, V, offs_n, N, c, D, DV, BD, BDV)
        s = tl.dot(x, tl.trans(y), input_precision=PREC)
        dp = tl.dot(do, tl.trans(vb), input_precision=PREC)
        diff = offs_m[:, None] - offs_n[None, :]
        valid = (diff >= 0) & (diff < WINDOW)
        p, dsl, g, h = _ds(s, dp, a, rc, b, sg, lse2[:, None], delta[:, None], valid, kk, tmax)
        gvec += tl.sum(dsl, axis=1)
        gs = g * sg[None, :]
        rq += tl.sum(gs + h, axis=1)
        acc = tl.dot(gs, yf, acc, input_precision=PREC)  # float32 operands (tf32 for 16-bit inputs)
    kappa = -2.0 * sc * tl.sqrt(c)
    xf = _reload(X + row0 * D, offs_m, N, D, BD)
    dx = (kappa * rho)[:, None] * (xf * rq[:, None] - acc)
    t = tl.sum(tl.sum(xf * dx, axis=1), axis=0)
    dq, dcq = _exp0_bwd_rows(_reload(Q + row0 * D, offs_m, N, D, BD), dx, c, min_norm)
    _store(DQo + row0 * D, offs_m, N, dq, D, BD)
    i_p = i_bh * tl.num_programs(0) + i
    _partials(DSC + i_p, DC + i_p, gvec, t, c, sc, tl.sum(dcq, axis=0))


def _cfg(d, dv, dtype, window, block_m, block_n):
    """The forward's tiles, per program: BM x BN (block_m, block_n where given). Chosen by bench/tiles.py on the
    H200 (results/kernels/README.md, run 10)."""
    BD = max(16, triton.next_power_of_2(d))
    BDV = max(16, triton.next_power_of_2(dv))
    wide = max(BD, BDV) > 64
    prec = "ieee" if dtype == torch.float32 else "tf32"
    bm = block_m or (32 if wide else 64)
    return BD, BDV, bm, block_n or bm, prec


def _fwd_launch(BD, BDV):
    """num_warps and num_stages of the forward. H200, (8, 16, N, 64) bf16, 64 x 64 tiles: 2 stages 0.767 ms at
    16K, 1 stage 0.796, 8 warps ~2x slower (bench/tiles.py)."""
    return dict(num_warps=4, num_stages=2)


def _launch_fwd(q, k, v, c32, s32, window, block_m, block_n):
    """q, k: (B, H, N, D) tangent vectors (one dtype); v: (B, H, N, DV); c32, s32: (H,) float32 (all contiguous)
    -> o: (B, H, N, DV) in v's dtype, lse: (B, H, N) float32, the ball points x = exp0(q), y = exp0(k) like q:
    the row map's kernel maps k, the attention kernel q."""
    Bsz, H, n, d = q.shape
    dv = v.shape[-1]
    BD, BDV, bm, bn, prec = _cfg(d, dv, q.dtype, window, block_m, block_n)
    y = _rowmap_fwd(_rows(k), _head_rows(c32, k), False, 0.0).view(k.shape)
    o = torch.empty(Bsz, H, n, dv, device=v.device, dtype=v.dtype)
    lse = torch.empty(Bsz, H, n, device=v.device, dtype=torch.float32)
    x = torch.empty_like(q)
    _window_fwd_kernel[(triton.cdiv(n, bm), Bsz * H)](
        q, y, v, c32, s32, x, o, lse, n, H, window, 1.0 - BALL_EPS, MIN_NORM, D=d, DV=dv, BM=bm, BN=bn, BD=BD,
        BDV=BDV, PREC=prec, **_fwd_launch(BD, BDV),
    )  # fmt: skip
    return o, lse, x, y


def _split_tiles(BD, BDV, fp32):
    """(BQ queries, BK keys) of the backward's dk/dv kernel and of its dq kernel. Not swept yet (the whole backward
    is timed in runs 12 and 15 of results/kernels/README.md; bench/tiles.py sweeps them): a key block of 64
    against query blocks of 32 (the dk, dv accumulators are the registers that grow with BK), a query block of
    64 against key blocks of 32 (dx's); 32 x 32 at head dims above 64 and for float32 inputs. With _dkdv_launch
    and _dq_launch, sm_90: 165-168 registers and no spill at head dims 64 and 128 in bf16, compiled as a launch
    at the benchmark's shapes (shared_memory_probe.py --aligned); 64 x 64 tiles spill at 64, with 4 or 8 warps,
    and so do the 16-bit tiles in float32 (the dk/dv kernel 6 KB a thread)."""
    return ((32, 32), (32, 32)) if max(BD, BDV) > 64 or fp32 else ((32, 64), (64, 32))


def _dkdv_launch(BD, BDV):
    """num_warps and num_stages of the backward's dk/dv kernel (not swept yet)."""
    return dict(num_warps=8 if max(BD, BDV) > 64 else 4, num_stages=2)


def _dq_launch(BD, BDV):
    """num_warps and num_stages of the backward's dq kernel (not swept yet)."""
    return dict(num_warps=8 if max(BD, BDV) > 64 else 4, num_stages=2)


def _split_plan(d, dv, dtype, block_m=None, block_n=None):
    """(kernel, constexprs, launch options) of the backward's dk/dv kernel, then its dq kernel, as
    _launch_bwd launches them: each with _split_tiles' BQ x BK, or block_m queries x block_n keys where
    given."""
    BD, BDV, *_, prec = _cfg(d, dv, dtype, 0, None, None)
    tiles, launches = _split_tiles(BD, BDV, dtype == torch.float32), (_dkdv_launch(BD, BDV), _dq_launch(BD, BDV))
    for fn, (bq, bk), launch in zip((_window_bwd_dkdv_kernel, _window_bwd_dq_kernel), tiles, launches, strict=True):
        yield fn, dict(D=d, DV=dv, BQ=block_m or bq, BK=block_n or bk, BD=BD, BDV=BDV, PREC=prec), launch


def _launch_bwd(do, o, q, k, x, y, v, c32, s32, lse, window, block_m, block_n):
    """do, o: (B, H, N, DV) in v's dtype; q, k: the tangent inputs; the rest as the forward's -> dq: like q,
    dk: like k, dv: like v, dc, dscale: (H,) float32. Two kernels: dk and dv per key block, then dq per query
    block (each stored once, exp0's backward in the kernels' epilogues, where each row's dy or dx is complete)."""
    Bsz, H, n, d = x.shape
    bh = Bsz * H
    (dkdv, kc, kl), (dq_kernel, qc, ql) = _split_plan(d, v.shape[-1], x.dtype, block_m, block_n)
    nk, nq = triton.cdiv(n, kc["BK"]), triton.cdiv(n, qc["BQ"])
    delta = row_dot(do, o)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dck = torch.empty(bh, nk, device=x.device, dtype=torch.float32)
    dsc, dcq = torch.empty(2, bh, nq, device=x.device, dtype=torch.float32)
    ins = (x, y, v, c32, s32, do, lse, delta)
    dkdv[(nk, bh)](*ins, k, dk, dv, dck, n, H, window, 1.0 - BALL_EPS, MIN_NORM, **kc, **kl)
    dq_kernel[(nq, bh)](*ins, q, dq, dsc, dcq, n, H, window, 1.0 - BALL_EPS, MIN_NORM, **qc, **ql)
    heads = lambda t: t.view(Bsz, H, -1).sum((0, 2))  # noqa: E731
    return dq, dk, dv, heads(dcq) + heads(dck), heads(dsc)


# Custom ops: dynamo and AOT autograd see each op as opaque (fake tensors give the shapes).


def _head_rows(c, t):
    """c: (H,) float32; t: (B, H, N, D) -> c per row of t, (B * H * N,), as the Poincare launchers take it."""
    return _curv_rows(c.view(1, -1, 1, 1), t)


def _rows(t):
    return t.view(-1, t.shape[-1])


@torch.library.custom_op("phasebench::window_hyp_attn_fwd", mutates_args=())
def window_hyp_attn_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    scale: torch.Tensor,
    window: int,
    block_m: int | None,
    block_n: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k: (B, H, N, D) tangent vectors (one dtype); v: (B, H, N, DV); c, scale: (H,) float32; all contiguous
    -> o: (B, H, N, DV) in v's dtype, lse: (B, H, N) float32, and the ball points x = exp0(q), y = exp0(k)
    that the backward reads (two launches: kernels.poincare's row map for k, the attention's, which maps q)."""
    return _launch_fwd(q, k, v, c, scale, window, block_m, block_n)


@torch.library.custom_op("phasebench::window_hyp_attn_bwd", mutates_args=())
def window_hyp_attn_bwd(
    do: torch.Tensor,
    o: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
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
    """do, o: (B, H, N, DV) in v's dtype; the rest as window_hyp_attn_fwd's inputs and outputs, all contiguous
    -> dq: like q, dk: like k, dv: like v, dc, dscale: (H,) float32. The attention's dx reaches exp0's
    backward in float32, in the dq kernel's epilogue (no cast in between)."""
    return _launch_bwd(do, o, q, k, x, y, v, c, scale, lse, window, block_m, block_n)


@window_hyp_attn_fwd.register_fake
def _(q, k, v, c, scale, window, block_m, block_n):
    o = v.new_empty((*q.shape[:-1], v.shape[-1]))
    return o, q.new_empty(q.shape[:-1], dtype=torch.float32), torch.empty_like(q), torch.empty_like(k)


@window_hyp_attn_bwd.register_fake
def _(do, o, q, k, x, y, v, c, scale, lse, window, block_m, block_n):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(c), torch.empty_like(scale)


def _fwd_setup_context(ctx, inputs, output):
    q, k, v, c, scale, window, block_m, block_n = inputs
    o, lse, x, y = output
    ctx.mark_non_differentiable(lse, x, y)
    ctx.save_for_backward(q, k, x, y, v, c, scale, o, lse)
    ctx.meta = (window, block_m, block_n)


def _fwd_backward(ctx, do, _dlse, _dx, _dy):
    q, k, x, y, v, c, scale, o, lse = ctx.saved_tensors
    do = do.to(v.dtype).contiguous()
    return *window_hyp_attn_bwd(do, o, q, k, x, y, v, c, scale, lse, *ctx.meta), None, None, None


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
    """q, k, v: (B, H, N, D) tangent vectors; c, scale: (H,) > 0 -> o: (B, H, N, D) in v's dtype. block_m x block_n:
    the forward's tiles, and both backward kernels' (queries x keys), where given."""
    if q.shape[-2] == 0:
        return v.clone()
    # the float32 casts carry the grads of c and scale back to their own dtype
    c32, s32 = c.float().contiguous(), scale.float().contiguous()
    q, k = q.contiguous(), k.to(q.dtype).contiguous()
    return window_hyp_attn_fwd(q, k, v.contiguous(), c32, s32, int(window), block_m, block_n)[0]
