"""Triton flash-style causal sliding-window attention scored by the Poincare distance.

q and k enter the ball by exp0 (per-head c) inside the kernels. The forward maps q as it loads its query block (once
a program, outside the key loop) and stores x = exp0(q) for the backward, which reads it (in q's dtype; mapping
the query block again from q was 5 % slower on the H100, run 17a of results/kernels/runs.md). The forward and
the backward's dq kernel map k a key tile at a time (_key_rows): y = r k with exp0's ratio r per row, so a Gram
tile is r <x,k> and no y is stored (the separate row map of k it replaces took 0.18 of 3.35 ms at 16K, run 19).
For 16-bit inputs r comes from the hardware's tanh; both compute it the same way, and the dq kernel stores r and
|y|^2 of each key row (8 bytes a row) for the dk/dv kernel, so the backward scores the very pairs the forward
scored (a forward mapping k so against a backward that read a stored, rounded y failed the bf16 test of the scale
gradient, run 19b). Loading them took 5-7 % off the dk/dv kernel and storing them cost the dq kernel 4-5 % (run
21b, H100). exp0's backward takes the float32 dx and dy in the backward kernels' epilogues. With
a = |x|^2, b = |y|^2 = r^2 |k|^2, rho = 1/(1 - c a), sigma = 1/(1 - c b) (per row and per column; 1 - c a floored
at 1e-15), for s in (t - W, t]:

    tau = c (a + b - 2<x,y>) rho sigma, clamped to [Z2_MIN, umax^2/(1 - umax^2)]
    d_ts = (2/sqrt c) asinh(sqrt tau) = (1/sqrt c) ln(1 + 2 tau + 2 sqrt(tau (1 + tau)))
    p = softmax_s(-scale_h d_ts),  o_t = sum_s p_ts v_s

This is naive.pair_dist with its clamps: den = c num2 + (1 - c a)(1 - c b), so z^2 = c num2/den = tau/(1 + tau)
(tau needs no division per pair; the softmax runs in base 2). Only tiles of the Gram matrix exist (online
softmax, no N x N tensor); the forward stores the row log-sum-exp.

Tiles are folded. A query block [t0, t0 + BM) sees the keys (t0 - W, t0 + BM). Those in [t0 + BM - W, t0) are
in every row's window (the band: no mask but the block's end). The rest, the diagonal keys [t0, t0 + BM) and
the W keys before each, pair up: entry (t, s) of a diagonal tile stands for the key s where s <= t and for the
key s - W where s > t: at most one of the two is in t's window, and each key of that window outside the band
is one of them. So each pair of the window's two triangles is scored once (with BM <= W no entry is wasted),
where square tiles of the diagonal block and of the one W earlier score twice as many entries, half of them
masked: the per-pair chain (rsqrt, log2, exp2 and ~30 more operations) runs on half the entries. The matrix
products still run on both blocks (s and p v once a block, the operands selected or masked by the fold). The
dk/dv kernel folds the same way key-major: a key block's diagonal queries with the queries W later (_fold).
Where the window spans a block (WIDE, the launch's choice) the folds need no per-entry window test.

Backward: two kernels, as FlashAttention-2's, both recomputing p from the log-sum-exp: one program per (key block of
BK, batch * head) walks the queries that reach it and stores dy and dv once; one program per (query block of BQ,
batch * head) walks the keys in its window (as the forward) and stores dx once. The dq kernel runs first and stores
delta = sum(do * o, -1) for its rows as it reads do (no launch of its own: 4 % off the backward on the H100, run
17a). Each pair is scored twice (once per kernel), but no dx is read back: no atomics, deterministic. A program
holds whole rows of dx (dy) when it stores them, so it loads the tangent rows of q (k) and stores dq (dk) in their
dtype through exp0's backward: no float32 dx goes to memory. (A one-kernel backward that scored each pair once and
summed dx in place over strips of key blocks, side buffers between strips, ran 3-8 % slower on the H200 at 253-255
registers: run 15 of results/kernels/runs.md. It is gone since.)

With g = ds / sqrt(tau (1 + tau)) (0 where tau is clamped) and kappa = -2 scale sqrt c:

    dx_t = kappa rho_t (x_t sum_s g (sigma_s + tau) - sum_s g sigma_s y_s)
    dy_s = kappa sigma_s (y_s sum_t g (rho_t + tau) - sum_t g rho_t x_t)
    dscale = -sum ds d,  dc = (sum_t x_t . dx_t + sum_s y_s . dy_s - scale dscale) / (2c)

(dc because d is c^(-1/2) times a function of c a, c b and c <x,y> alone). Each program stores its partial
sums of dscale and dc (the query programs dscale and the x . dx part of dc, the key programs the y . dy part,
each with its rows' dc of exp0), which the launcher sums.
"""

from __future__ import annotations

import functools
import itertools

import torch
import triton
import triton.language as tl

from kernels.custom_op import differentiable_op
from kernels.fastmath import log2_approx, rcp_approx, tanh_approx
from kernels.grid import cdiv, next_power_of_2
from kernels.launch import TRITON_VERSION, launch
from kernels.masking import keep
from kernels.poincare.naive import BALL_EPS, MIN_NORM
from kernels.poincare.triton import _exp0_bwd_rows, _exp0_rows, _norm2_floored, _tanh_ratio, _tanh_ratio_series
from kernels.window_attn.naive import Z2_MIN  # noqa: F401  (the literal 1e-12 below)


@triton.jit
def _in_rows(rows, N):
    """Which of `rows` are rows of the sequence, [0, N) (a block's rows before the first or past the last are not)."""
    return (rows >= 0) & (rows < N)


@triton.jit
def _tile(P, rows, N, W: tl.constexpr, BW: tl.constexpr):
    """Pointers to rows `rows` (in [0, N)) of a (N, W) row-major matrix at P, and their mask (columns padded to
    BW)."""
    cols = tl.arange(0, BW)
    ptrs = P + rows[:, None] * W + cols[None, :]
    if W == BW:
        mask = _in_rows(rows, N)[:, None]
    else:
        mask = _in_rows(rows, N)[:, None] & (cols < W)[None, :]
    return ptrs, mask


@triton.jit
def _load(P, rows, N, W: tl.constexpr, BW: tl.constexpr):
    ptrs, mask = _tile(P, rows, N, W, BW)
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit
def _reload_rows(P, rows, N, W: tl.constexpr, BW: tl.constexpr, PREC: tl.constexpr, BY_DOT: tl.constexpr):
    """_load as float32, for a backward kernel's epilogue: a tile read again after the loops rather than held through
    them in registers (ptxas held a (64, 64) float32 tile through the loops: 60-70 registers); volatile, or the
    compiler merges it with the first load. BY_DOT: the tile as the product of the identity with the loaded one
    (exact: each entry a sum of one product by 1 and zeros), which leaves it in the layout of the kernel's dots. A
    row sum of its product with the accumulated dx or dy then stays in that layout, where a loaded tile's product is
    converted back to the load's layout first: two 64 x 64 round trips through shared memory where the tile's own
    conversion would do (results/kernels/epilogue-layouts/)."""
    ptrs, mask = _tile(P, rows, N, W, BW)
    t = tl.load(ptrs, mask=mask, other=0.0, volatile=True)
    if BY_DOT:
        ids = tl.arange(0, rows.shape[0])
        return tl.dot((ids[:, None] == ids[None, :]).to(t.dtype), t, input_precision=PREC)
    return t.to(tl.float32)


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
def _conformal(c, n2):
    """1/(1 - c n2) for squared ball norms n2 (rho of a query, sigma of a key), the denominator floored at 1e-15."""
    return 1.0 / tl.maximum(1.0 - c * n2, 1e-15)


@triton.jit
def _norms(t, c):
    """Rows of a tile -> |row|^2 and 1/(1 - c |row|^2) in float32 (_conformal)."""
    tf = t.to(tl.float32)
    n2 = tl.sum(tf * tf, axis=1)
    return n2, _conformal(c, n2)


@triton.jit
def _tau_log(s, a, rc, b, sg, tmax, m):
    """Gram tile s = <x,k> and m = -2 r, the keys' exp0 ratio (y = r k: m s = -2 <x,y>); a = |x|^2, rc = c rho,
    b = |y|^2, sg = sigma, each broadcast along the tile or a tile itself -> tau, its clamp tc, 1/sqrt(tc (1 + tc))
    and log2(1 + 2 tc + 2 sqrt(tc (1 + tc))) = sqrt(c) d / ln 2, by the hardware's log2 (kernels/fastmath.py):
    float32 tl.math.log2 inlines libdevice's exact __nv_log2f, ~30 instructions with a branch a pair (with the
    folded tiles it costs the forward no registers: 153 against 155 at head dim 64, sm_90, and no spill in
    float32)."""
    tau = (rc * (b + m * s) + rc * a) * sg
    tc = tl.minimum(tl.maximum(tau, 1e-12), tmax)
    t = tc * tc + tc
    rq = tl.math.rsqrt(t)
    return tau, tc, rq, log2_approx(1.0 + 2.0 * (tc + t * rq))


@triton.jit
def _head_consts(C, S, h, umax):
    """Curvature, scale, the clamp of tau (z <= umax), and the score per log2 unit, -scale/sqrt c."""
    umax = tl.cast(umax, tl.float32)  # inductor passes Python floats as fp64
    c = tl.load(C + h)
    sc = tl.load(S + h)
    tmax = umax * umax / ((1.0 - umax) * (1.0 + umax))
    return c, sc, tmax, -sc / tl.sqrt(c)


@triton.jit
def _fold(e, WINDOW, near_ok, far_ok):
    """A folded tile: e = t - s for the query t and the near key s of each entry (the diagonal blocks), whose far
    partner is the key W earlier (the query W later in a key-major tile); near_ok, far_ok where each belongs to
    this tile -> near (the entry is the pair (t, s), else its partner's), valid (that pair is in the window).
    With W >= the tile's side every pair of the diagonal blocks' windows is exactly one entry."""
    near = e >= 0
    return near, tl.where(near, (e < WINDOW) & near_ok, (e + WINDOW >= 0) & far_ok)


@triton.jit
def _fold_keys(offs_m, offs_n, t0, t_end, WINDOW, WIDE: tl.constexpr):
    """_fold for the query block [t0, t_end) (rows offs_m) and its diagonal keys offs_n -> near, valid (the far
    keys offs_n - W count where they are before t0, from near keys before t_end). WIDE (_wide: the block within
    the window, the key tiles no wider than it): every near entry is in the window, and every far one whose key
    exists, so valid is near or a key >= 0, two operations an entry where _fold takes about ten."""
    e = offs_m[:, None] - offs_n[None, :]
    far = offs_n - WINDOW
    if WIDE:
        near = e >= 0
        return near, near | (far >= 0)[None, :]
    else:
        inb = offs_n < t_end
        return _fold(e, WINDOW, inb[None, :], (inb & (far >= 0) & (far < t0))[None, :])


@triton.jit
def _pick_dot(near, a, b_n, b_f, PREC: tl.constexpr):
    """a b_n^T where near, a b_f^T elsewhere: a folded tile's Gram (or do . v) entries."""
    s_n = tl.dot(a, tl.trans(b_n), input_precision=PREC)
    return tl.where(near, s_n, tl.dot(a, tl.trans(b_f), input_precision=PREC))


@triton.jit
def _online(score, m_i, l_i, acc):
    """Online softmax in base 2: a score tile (-inf outside the window), the running row max, sum and output
    -> p, and the max, sum and output rescaled to p's max."""
    m_new = tl.maximum(m_i, tl.max(score, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.math.exp2(m_i - m_safe)
    p = tl.math.exp2(score - m_safe[:, None])
    return p, m_new, l_i * alpha + tl.sum(p, axis=1), acc * alpha[:, None]


@triton.jit
def _key_rows(K, offs_n, N, c, min_norm, D: tl.constexpr, BD: tl.constexpr, FAST: tl.constexpr):
    """A key block at rows offs_n -> its tangent rows k, exp0's ratio r (y = exp0(k) = r k), |y|^2 and sigma,
    float32 per row. The forward and the dq kernel map k so, to the bit, and the dk/dv kernel loads the dq kernel's
    r and |y|^2 (_keys_from_dq): the backward scores the pairs the forward scored. r by
    the hardware's tanh where FAST (16-bit inputs: ~2^-11 relative, finer than a 16-bit y's rounding), else as
    kernels.poincare's exp0."""
    k = _load(K, offs_n, N, D, BD)
    kf = k.to(tl.float32)
    min_norm = tl.cast(min_norm, tl.float32)  # inductor passes Python floats as fp64
    n2 = _norm2_floored(kf, min_norm)
    u = tl.sqrt(c * n2)
    if FAST:
        r = tl.where(u < 0.1, _tanh_ratio_series(u * u), tanh_approx(u) * rcp_approx(u))
    else:
        r, _dr = _tanh_ratio(u)
    b = r * r * n2
    return k, r, b, _conformal(c, b)


@triton.jit
def _store_key_rows(KR, offs_n, N, r, b):
    """Store a key block's exp0 ratio r and |y|^2 at KR + offs_n and KR + N + offs_n (a (2, N) row of the
    backward's key buffer), for the dk/dv kernel (_keys_from_dq)."""
    inb = _in_rows(offs_n, N)
    tl.store(KR + offs_n, r, mask=inb)
    tl.store(KR + N + offs_n, b, mask=inb)


@triton.jit
def _fwd_band(x, ra, rc, K, V, offs_n, t0, N, c, kk, tmax, min_norm, m_i, l_i, acc, D: tl.constexpr,
              DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr,
              FAST: tl.constexpr):  # fmt: skip
    """Keys offs_n in the window of every query of the block at t0 (those from t0 on are the diagonal's)."""
    k, r, b, sg = _key_rows(K, offs_n, N, c, min_norm, D, BD, FAST)
    s = tl.dot(x, tl.trans(k), input_precision=PREC)
    _tau, _tc, _rq, lg = _tau_log(s, ra, rc, b[None, :], sg[None, :], tmax, -2.0 * r[None, :])
    p, m_i, l_i, acc = _online(tl.where((offs_n < t0)[None, :], kk * lg, float("-inf")), m_i, l_i, acc)
    vb = _load(V, offs_n, N, DV, BDV)
    return m_i, l_i, tl.dot(p.to(vb.dtype), vb, acc, input_precision=PREC)


@triton.jit
def _fwd_fold(x, ra, rc, K, V, offs_m, offs_n, t0, t_end, N, WINDOW, c, kk, tmax, min_norm, m_i, l_i, acc,
              D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr,
              WIDE: tl.constexpr, FAST: tl.constexpr):  # fmt: skip
    """The diagonal keys offs_n of the query block [t0, t_end), folded with the keys W earlier (before t0: those
    from t0 on are near keys of their own; from near keys before t_end: those after are the band's); near keys
    past N have far partners below it."""
    far = offs_n - WINDOW
    k_n, r_n, b_n, sg_n = _key_rows(K, offs_n, N, c, min_norm, D, BD, FAST)
    k_f, r_f, b_f, sg_f = _key_rows(K, far, N, c, min_norm, D, BD, FAST)
    near, valid = _fold_keys(offs_m, offs_n, t0, t_end, WINDOW, WIDE)
    s = _pick_dot(near, x, k_n, k_f, PREC)
    b = tl.where(near, b_n[None, :], b_f[None, :])
    sg = tl.where(near, sg_n[None, :], sg_f[None, :])
    _tau, _tc, _rq, lg = _tau_log(s, ra, rc, b, sg, tmax, tl.where(near, -2.0 * r_n[None, :], -2.0 * r_f[None, :]))
    p, m_i, l_i, acc = _online(tl.where(valid, kk * lg, float("-inf")), m_i, l_i, acc)
    v_n = _load(V, offs_n, N, DV, BDV)
    acc = tl.dot(tl.where(near, p, 0.0).to(v_n.dtype), v_n, acc, input_precision=PREC)
    v_f = _load(V, far, N, DV, BDV)
    return m_i, l_i, tl.dot(tl.where(near, 0.0, p).to(v_f.dtype), v_f, acc, input_precision=PREC)


@triton.jit
def _window_fwd_kernel(
    Q,
    K,
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
    WIDE: tl.constexpr,
    FAST: tl.constexpr,
):
    """Q, K: (BH, N, D) tangent queries and keys, mapped by exp0 as they load (_load_ball, _key_rows), XO the
    queries' ball points (stored for the backward); V, OUT: (BH, N, DV); C, S: (H,) float32; LSE: (BH, N). Grid
    (cdiv(N, BM), BH)."""
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    row0 = i_bh.to(tl.int64) * N
    Q += row0 * D
    K += row0 * D
    V += row0 * DV
    c, sc, tmax, kk = _head_consts(C, S, i_bh % H, umax)
    t0 = i_m * BM
    offs_m = t0 + tl.arange(0, BM)
    x = _load_ball(Q, offs_m, N, c, min_norm, D, BD)
    _store(XO + row0 * D, offs_m, N, x, D, BD)
    a, rho = _norms(x, c)
    ra = a[:, None]
    rc = (c * rho)[:, None]
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, BDV], dtype=tl.float32)
    for start in range(tl.maximum(t0 + BM - WINDOW, 0), t0, BN):
        m_i, l_i, acc = _fwd_band(
            x, ra, rc, K, V, start + tl.arange(0, BN), t0, N, c, kk, tmax, min_norm, m_i, l_i, acc, D, DV, BD, BDV,
            PREC, FAST,
        )  # fmt: skip
    for start in range(t0, t0 + BM, BN):
        m_i, l_i, acc = _fwd_fold(
            x, ra, rc, K, V, offs_m, start + tl.arange(0, BN), t0, t0 + BM, N, WINDOW, c, kk, tmax,
            min_norm, m_i, l_i, acc, D, DV, BD, BDV, PREC, WIDE, FAST,
        )  # fmt: skip
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    _store(OUT + row0 * DV, offs_m, N, acc / l_safe[:, None], DV, BDV)
    tl.store(LSE + row0 + offs_m, (m_i + log2_approx(l_safe)) * 0.6931471805599453, mask=offs_m < N)


@triton.jit
def _keys(K, V, offs_n, N, c, min_norm, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
          FAST: tl.constexpr):  # fmt: skip
    """Key block at rows offs_n -> its tangent rows k, r, |y|^2, sigma (_key_rows) and its values."""
    k, r, b, sg = _key_rows(K, offs_n, N, c, min_norm, D, BD, FAST)
    return k, r, b, sg, _load(V, offs_n, N, DV, BDV)


@triton.jit
def _keys_from_dq(K, V, KR, offs_n, N, c, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr):
    """_keys with the r and |y|^2 the dq kernel stored for the block (_store_key_rows: the very bits it and the
    forward scored with; rows outside [0, N): r = |y|^2 = 0)."""
    inb = _in_rows(offs_n, N)
    b = tl.load(KR + N + offs_n, mask=inb, other=0.0)
    r = tl.load(KR + offs_n, mask=inb, other=0.0)
    return _load(K, offs_n, N, D, BD), r, b, _conformal(c, b), _load(V, offs_n, N, DV, BDV)


@triton.jit
def _query_rows(X, DO, LSE, offs_m, N, c, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr):
    """Query block at rows offs_m -> x, |x|^2, rho, do, the log-sum-exp in base 2 (rows outside [0, N): do = 0,
    and p is finite)."""
    x = _load(X, offs_m, N, D, BD)
    a, rho = _norms(x, c)
    do = _load(DO, offs_m, N, DV, BDV)
    lse2 = tl.load(LSE + offs_m, mask=_in_rows(offs_m, N), other=0.0) * 1.4426950408889634
    return x, a, rho, do, lse2


@triton.jit
def _queries(X, DO, LSE, DELTA, offs_m, N, c, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr):
    """_query_rows and delta (0 outside [0, N), so those rows' ds = 0)."""
    x, a, rho, do, lse2 = _query_rows(X, DO, LSE, offs_m, N, c, D, DV, BD, BDV)
    return x, a, rho, do, lse2, tl.load(DELTA + offs_m, mask=_in_rows(offs_m, N), other=0.0)


@triton.jit
def _dq_delta(DELTA, OUT, do, offs_m, N, DV: tl.constexpr, BDV: tl.constexpr):
    """The dq kernel's delta = sum(do * o, -1) for its rows, from do and the rows of o (float32 products, as
    kernels/row_dot.py), stored for the dk/dv kernel that runs after it."""
    delta = tl.sum(do.to(tl.float32) * _load(OUT, offs_m, N, DV, BDV).to(tl.float32), axis=1)
    tl.store(DELTA + offs_m, delta, mask=_in_rows(offs_m, N))
    return delta


@triton.jit
def _ds(s, dp, a, rc, b, sg, lse2, delta, valid, kk, tmax, MASKED: tl.constexpr, m):
    """A backward tile, either way round: the Gram tile s and do . v tile dp (both dots come first: no tile of
    the chain below is held through a dot), _tau_log's rows and columns, the query's lse2 and delta broadcast
    along the tile (or tiles), valid the window -> p, ds log2(...), g = ds / sqrt(tc (1 + tc)) (0 where tau is
    clamped: no gradient through the clamps), g tc."""
    tau, tc, rs, lg = _tau_log(s, a, rc, b, sg, tmax, m)
    p = keep(valid, tl.math.exp2(kk * lg - lse2), 0.0, MASKED)
    ds = p * (dp - delta)
    g = ds * tl.where(tau == tc, rs, 0.0)
    return p, ds * lg, g, g * tc


@triton.jit
def _dkdv_band(k, vb, kb, kc, km, X, DO, LSE, DELTA, offs_t, t_end, N, c, kk, tmax, dk, dv, rk, D: tl.constexpr,
               DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr):  # fmt: skip
    """Queries offs_t whose windows hold every key of the block k (those from t_end on are the diagonal's
    partners), held key-major (km: -2 r of the keys). Accumulates sum_t g rho_t x_t (dk), dv and
    sum_t g (rho_t + tau) (rk)."""
    x, a, rho, do, lse2, delta = _queries(X, DO, LSE, DELTA, offs_t, N, c, D, DV, BD, BDV)
    s = tl.dot(k, tl.trans(x), input_precision=PREC)
    dp = tl.dot(vb, tl.trans(do), input_precision=PREC)
    valid = (offs_t < t_end)[None, :]
    p, _dsl, g, h = _ds(
        s, dp, kb, kc, a[None, :], rho[None, :], lse2[None, :], delta[None, :], valid, kk, tmax, True, km
    )
    gr = g * rho[None, :]
    dk = tl.dot(gr.to(x.dtype), x, dk, input_precision=PREC)
    return dk, tl.dot(p.to(do.dtype), do, dv, input_precision=PREC), rk + tl.sum(gr + h, axis=1)


@triton.jit
def _dkdv_fold(k, vb, kb, kc, km, X, DO, LSE, DELTA, offs_n, offs_t, k_end, N, WINDOW, c, kk, tmax, dk, dv, rk,
               D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr,
               WIDE: tl.constexpr):  # fmt: skip
    """The diagonal queries offs_t of the key block k at offs_n (ending at k_end), folded with the queries W later
    (from k_end on: those before it are near queries of their own); accumulates as _dkdv_band. WIDE (_wide: the
    key block within the window, the query tiles no wider): every entry is a pair of the window (queries past N
    load zeros, which give ds = 0), so no entry is masked."""
    far = offs_t + WINDOW
    x_n, a_n, rho_n, do_n, lse_n, del_n = _queries(X, DO, LSE, DELTA, offs_t, N, c, D, DV, BD, BDV)
    x_f, a_f, rho_f, do_f, lse_f, del_f = _queries(X, DO, LSE, DELTA, far, N, c, D, DV, BD, BDV)
    e = offs_t[None, :] - offs_n[:, None]
    near, valid = _fold(e, WINDOW, (offs_t < k_end)[None, :], (far >= k_end)[None, :])
    s = _pick_dot(near, k, x_n, x_f, PREC)
    dp = _pick_dot(near, vb, do_n, do_f, PREC)
    rho = tl.where(near, rho_n[None, :], rho_f[None, :])
    a = tl.where(near, a_n[None, :], a_f[None, :])
    lse2 = tl.where(near, lse_n[None, :], lse_f[None, :])
    delta = tl.where(near, del_n[None, :], del_f[None, :])
    p, _dsl, g, h = _ds(s, dp, kb, kc, a, rho, lse2, delta, valid, kk, tmax, not WIDE, km)
    gr = g * rho
    dk = tl.dot(tl.where(near, gr, 0.0).to(x_n.dtype), x_n, dk, input_precision=PREC)
    dk = tl.dot(tl.where(near, 0.0, gr).to(x_f.dtype), x_f, dk, input_precision=PREC)
    dv = tl.dot(tl.where(near, p, 0.0).to(do_n.dtype), do_n, dv, input_precision=PREC)
    dv = tl.dot(tl.where(near, 0.0, p).to(do_f.dtype), do_f, dv, input_precision=PREC)
    return dk, dv, rk + tl.sum(gr + h, axis=1)


@triton.jit
def _key_grad(kf, r, kappa, sg, dk, rk):
    """A key block's dy, float32, from its float32 tangent rows k (y = r k) and its accumulators dk
    (sum_t g rho_t x_t) and rk."""
    return (kappa * sg)[:, None] * ((r * rk)[:, None] * kf - dk)


@triton.jit
def _slot(i_bh, H, block, PARTS, HEAD_SLOTS):
    """Where a program stores its partial sums of dc and dscale: row (h, b) of (H, B, PARTS) for i_bh = b H + h,
    PARTS the dk/dv kernel's key blocks, first, and the dq kernel's query blocks (one contiguous reduction a head
    sums both); HEAD_SLOTS: the buffer's stride between heads (B PARTS, or more where the launch covers a group of
    the batch rows: _launch_bwd)."""
    return (i_bh % H) * HEAD_SLOTS + (i_bh // H) * PARTS + block


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
    K,
    V,
    C,
    S,
    DO,
    LSE,
    DELTA,
    KR,
    DKo,
    DVo,
    DC,
    DSC,
    N,
    H,
    WINDOW,
    PARTS,
    HEAD_SLOTS,
    umax,
    min_norm,
    D: tl.constexpr,
    DV: tl.constexpr,
    BQ: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
    WIDE: tl.constexpr,
    DOT_ROWS: tl.constexpr,
):
    """Keys. K: (BH, N, D) the tangent keys and KR: (BH, 2, N) their r and |y|^2, as the dq kernel stored them
    (_keys_from_dq); DKo: their gradient, like K, through exp0's backward here; DVo: (BH, N, DV); DC, DSC: (H, B
    PARTS) partial sums shared with the dq kernel (_slot): the key blocks' y . dy / 2c plus exp0's dc, and 0
    (dscale is the dq kernel's). Grid (cdiv(N, BK), BH): key block j of BK against the queries, in blocks of BQ,
    whose windows reach it. DOT_ROWS: the epilogue reloads k through the identity product (_reload_rows)."""
    j = tl.program_id(0)
    i_bh = tl.program_id(1)
    row0 = i_bh.to(tl.int64) * N
    X += row0 * D
    DO += row0 * DV
    LSE += row0
    DELTA += row0
    c, sc, tmax, kk = _head_consts(C, S, i_bh % H, umax)
    k0 = j * BK
    offs_n = k0 + tl.arange(0, BK)
    k, r, b, sg, vb = _keys_from_dq(K + row0 * D, V + row0 * DV, KR + 2 * row0, offs_n, N, c, D, DV, BD, BDV)
    kb = b[:, None]
    kc = (c * sg)[:, None]
    km = (-2.0 * r)[:, None]
    dk = tl.zeros([BK, BD], dtype=tl.float32)
    dv = tl.zeros([BK, BDV], dtype=tl.float32)
    rk = tl.zeros([BK], dtype=tl.float32)
    for start in range(k0 + BK, tl.minimum(k0 + WINDOW, N), BQ):
        dk, dv, rk = _dkdv_band(
            k, vb, kb, kc, km, X, DO, LSE, DELTA, start + tl.arange(0, BQ), k0 + WINDOW, N, c, kk, tmax, dk, dv, rk,
            D, DV, BD, BDV, PREC,
        )  # fmt: skip
    for start in range(k0, tl.minimum(k0 + BK, N), BQ):
        dk, dv, rk = _dkdv_fold(
            k, vb, kb, kc, km, X, DO, LSE, DELTA, offs_n, start + tl.arange(0, BQ), k0 + BK, N, WINDOW, c, kk, tmax,
            dk, dv, rk, D, DV, BD, BDV, PREC, WIDE,
        )  # fmt: skip
    _store(DVo + row0 * DV, offs_n, N, dv, DV, BDV)
    kf = _reload_rows(K + row0 * D, offs_n, N, D, BD, PREC, DOT_ROWS)
    dy = _key_grad(kf, r, -2.0 * sc * tl.sqrt(c), sg, dk, rk)
    tkey = tl.sum(r * tl.sum(kf * dy, axis=1), axis=0)
    dkt, dck = _exp0_bwd_rows(kf, dy, c, min_norm)
    _store(DKo + row0 * D, offs_n, N, dkt, D, BD)
    slot = _slot(i_bh, H, j, PARTS, HEAD_SLOTS)
    tl.store(DC + slot, tkey / (2.0 * c) + tl.sum(dck, axis=0))
    tl.store(DSC + slot, 0.0)


@triton.jit
def _dq_band(x, do, ra, rc, lse2, delta, K, V, offs_n, t0, N, c, kk, tmax, min_norm, gvec, rq, acc,
             D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr,
             FAST: tl.constexpr):  # fmt: skip
    """Keys offs_n in the window of every query of the block at t0, as _fwd_band. Accumulates sum_s ds log2(...)
    (gvec), sum_s g (sigma_s + tau) (rq) and sum_s g sigma_s y_s = sum_s (g sigma_s r_s) k_s (acc)."""
    k, r, b, sg, vb = _keys(K, V, offs_n, N, c, min_norm, D, DV, BD, BDV, FAST)
    s = tl.dot(x, tl.trans(k), input_precision=PREC)
    dp = tl.dot(do, tl.trans(vb), input_precision=PREC)
    valid = (offs_n < t0)[None, :]
    p, dsl, g, h = _ds(s, dp, ra, rc, b[None, :], sg[None, :], lse2, delta, valid, kk, tmax, True, -2.0 * r[None, :])
    gs = g * sg[None, :]
    acc = tl.dot((gs * r[None, :]).to(k.dtype), k, acc, input_precision=PREC)
    return gvec + tl.sum(dsl, axis=1), rq + tl.sum(gs + h, axis=1), acc


@triton.jit
def _dq_fold(x, do, ra, rc, lse2, delta, K, V, KR, offs_m, offs_n, t0, t_end, N, WINDOW, c, kk, tmax, min_norm, gvec,
             rq, acc, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr, PREC: tl.constexpr,
             WIDE: tl.constexpr, FAST: tl.constexpr):  # fmt: skip
    """The diagonal keys offs_n of the query block [t0, t_end), folded as _fwd_fold; accumulates as _dq_band, and
    stores the near keys' r and |y|^2 at KR for the dk/dv kernel (_store_key_rows: every key is a near key of one
    block)."""
    k_n, r_n, b_n, sg_n, v_n = _keys(K, V, offs_n, N, c, min_norm, D, DV, BD, BDV, FAST)
    _store_key_rows(KR, offs_n, N, r_n, b_n)
    k_f, r_f, b_f, sg_f, v_f = _keys(K, V, offs_n - WINDOW, N, c, min_norm, D, DV, BD, BDV, FAST)
    near, valid = _fold_keys(offs_m, offs_n, t0, t_end, WINDOW, WIDE)
    s = _pick_dot(near, x, k_n, k_f, PREC)
    dp = _pick_dot(near, do, v_n, v_f, PREC)
    sg = tl.where(near, sg_n[None, :], sg_f[None, :])
    b = tl.where(near, b_n[None, :], b_f[None, :])
    r = tl.where(near, r_n[None, :], r_f[None, :])
    p, dsl, g, h = _ds(s, dp, ra, rc, b, sg, lse2, delta, valid, kk, tmax, True, -2.0 * r)
    gs = g * sg
    gsr = gs * r
    acc = tl.dot(tl.where(near, gsr, 0.0).to(k_n.dtype), k_n, acc, input_precision=PREC)
    acc = tl.dot(tl.where(near, 0.0, gsr).to(k_f.dtype), k_f, acc, input_precision=PREC)
    return gvec + tl.sum(dsl, axis=1), rq + tl.sum(gs + h, axis=1), acc


@triton.jit
def _window_bwd_dq_kernel(
    X,
    K,
    V,
    C,
    S,
    DO,
    LSE,
    DELTA,
    KR,
    Q,
    DQo,
    OUT,
    DSC,
    DC,
    N,
    H,
    WINDOW,
    PARTS,
    HEAD_SLOTS,
    umax,
    min_norm,
    D: tl.constexpr,
    DV: tl.constexpr,
    BQ: tl.constexpr,
    BK: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
    WIDE: tl.constexpr,
    FAST: tl.constexpr,
    DOT_ROWS: tl.constexpr,
):
    """Queries. Q: (BH, N, D) the tangent queries (x = exp0(Q), read from X); K: the tangent keys, mapped as the
    forward maps them (_key_rows), whose r and |y|^2 this kernel stores at KR: (BH, 2, N) for the dk/dv kernel;
    DQo: the queries' gradient, like Q, stored once, through exp0's backward here; OUT: (BH, N, DV) the forward's
    output, from which this kernel, launched before the dk/dv kernel, writes DELTA (_dq_delta); DSC, DC: the dk/dv
    kernel's partial sums (_slot), which this kernel's blocks continue: dscale and (x . dx - scale dscale) / 2c
    plus exp0's dc. Grid (cdiv(N, BQ), BH): query block i of BQ against the keys, in blocks of BK, of its window,
    as the forward. DOT_ROWS: the epilogue reloads x and q through the identity product (_reload_rows)."""
    i = tl.program_id(0)
    i_bh = tl.program_id(1)
    row0 = i_bh.to(tl.int64) * N
    K += row0 * D
    V += row0 * DV
    KR += 2 * row0
    c, sc, tmax, kk = _head_consts(C, S, i_bh % H, umax)
    t0 = i * BQ
    offs_m = t0 + tl.arange(0, BQ)
    x, a, rho, do, lse2 = _query_rows(X + row0 * D, DO + row0 * DV, LSE + row0, offs_m, N, c, D, DV, BD, BDV)
    delta = _dq_delta(DELTA + row0, OUT + row0 * DV, do, offs_m, N, DV, BDV)
    ra = a[:, None]
    rc = (c * rho)[:, None]
    lse2 = lse2[:, None]
    delta = delta[:, None]
    gvec = tl.zeros([BQ], dtype=tl.float32)
    rq = tl.zeros([BQ], dtype=tl.float32)  # sum_s g (sigma_s + tau)
    acc = tl.zeros([BQ, BD], dtype=tl.float32)  # sum_s g sigma_s y_s
    for start in range(tl.maximum(t0 + BQ - WINDOW, 0), t0, BK):
        gvec, rq, acc = _dq_band(
            x, do, ra, rc, lse2, delta, K, V, start + tl.arange(0, BK), t0, N, c, kk, tmax, min_norm, gvec, rq, acc,
            D, DV, BD, BDV, PREC, FAST,
        )  # fmt: skip
    for start in range(t0, t0 + BQ, BK):
        gvec, rq, acc = _dq_fold(
            x, do, ra, rc, lse2, delta, K, V, KR, offs_m, start + tl.arange(0, BK), t0, t0 + BQ, N, WINDOW, c, kk,
            tmax, min_norm, gvec, rq, acc, D, DV, BD, BDV, PREC, WIDE, FAST,
        )  # fmt: skip
    kappa = -2.0 * sc * tl.sqrt(c)
    xf = _reload_rows(X + row0 * D, offs_m, N, D, BD, PREC, DOT_ROWS)
    dx = (kappa * rho)[:, None] * (xf * rq[:, None] - acc)
    t = tl.sum(tl.sum(xf * dx, axis=1), axis=0)
    dq, dcq = _exp0_bwd_rows(_reload_rows(Q + row0 * D, offs_m, N, D, BD, PREC, DOT_ROWS), dx, c, min_norm)
    _store(DQo + row0 * D, offs_m, N, dq, D, BD)
    slot = _slot(i_bh, H, PARTS - tl.num_programs(0) + i, PARTS, HEAD_SLOTS)
    _partials(DSC + slot, DC + slot, gvec, t, c, sc, tl.sum(dcq, axis=0))


def _cfg(d, dv, dtype, window, block_m, block_n, aligned=True):
    """The forward's tiles, per program: BM x BN (block_m, block_n where given). 16-bit inputs: 64 x 32, at head dim
    64 the fastest of bench/tiles.py's 20 choices on the H100 (0.863 ms at 16K, 4 warps, 2 stages; 64 x 16 0.888,
    64 x 64 1.01: run 16c of results/kernels/runs.md); at 128 1.433 ms at 16K against 2.986 for the 32 x 32 at 8
    warps it replaced (run 40; 64 x 64 took 1.288 there but asks 114,944 bytes of shared memory, above sm_89's
    101,376). Float32, and unaligned launches above head dim 64 (_big): 32 x 32 (from the registers, not timed)."""
    BD = max(16, next_power_of_2(d))
    BDV = max(16, next_power_of_2(dv))
    fp32 = dtype == torch.float32
    bm = block_m or (32 if _big(BD, BDV, fp32, aligned) else 64)
    return BD, BDV, bm, block_n or 32, "ieee" if fp32 else "tf32"


def _wide(window, side, folded):
    """Whether a kernel's folded tiles need no per-entry window test (_fold_keys, _dkdv_fold): its block's side
    within the window and the folded side no wider (one variant of each kernel a window regime)."""
    return window >= side and folded <= side


def _big(BD, BDV, fp32, aligned=True):
    """Whether a launch takes the smaller tiles with 8 warps: float32, and 16-bit inputs above head dim 64 where N
    is not a multiple of 16 (`aligned` False). Aligned 16-bit launches above head dim 64 take 4 warps and the tiles
    of head dim 64 (the backward's dk/dv kernel 16 x 64): on the H100 at (8, 16, N, 128) bf16 each kernel so was the
    fastest of bench/tiles.py's choices at 2K and at 16K, where 32 x 32 tiles at 8 warps, chosen before from the
    registers alone, took 1.9-2.3x longer (run 40 of results/kernels/runs.md; fwd+bwd 2.4-2.5x faster with them,
    1.14-1.18x flex_attention's time at 2K-16K, run 40b). Unaligned they were not timed, and
    compiled so (triton 3.9, sm_90) they spill 848-2,360 bytes a thread where 32 x 32 at 8 warps spills 96-304."""
    return fp32 or (_head_above_64(BD, BDV) and not aligned)


def _head_above_64(BD, BDV):
    """Whether the padded head dims exceed 64 (the tiles' register-bound regime, run 40)."""
    return max(BD, BDV) > 64


#: the forward's register cap at 16-bit head dims up to 64 (_fwd_launch)
FWD_MAXNREG = 128


def _capped_launch(BD, BDV, fp32, aligned, maxnreg):
    """Two stages at 4 warps (8 for _big tiles); 16-bit inputs at head dims up to 64 with N a multiple of 16
    (`aligned`, as Triton specialises the launch) also cap the registers at `maxnreg` (timed there alone)."""
    if _big(BD, BDV, fp32, aligned):
        return dict(num_warps=8, num_stages=2)
    capped = aligned and not _head_above_64(BD, BDV)
    return dict(num_warps=4, num_stages=2) | (dict(maxnreg=maxnreg) if capped else {})


def _fwd_launch(BD, BDV, fp32, aligned=True):
    """num_warps and num_stages of the forward. 16-bit inputs at head dims up to 64 with N a multiple of 16
    (`aligned`, as for _dq_launch) also cap its registers at FWD_MAXNREG, four programs of four warps an SM where
    161 registers let three: the forward 0.0865 against 0.0963 ms at 2K, 0.669 against 0.717 at 16K on the H100
    (run 20b of results/kernels/runs.md; 144 to 168 no faster than none, 184 and 200 slower). ptxas then spills
    96 bytes a thread on sm_90."""
    return _capped_launch(BD, BDV, fp32, aligned, FWD_MAXNREG)


def _launch_fwd(q, k, v, c32, s32, window, block_m, block_n):
    """q, k: (B, H, N, D) tangent vectors (one dtype); v: (B, H, N, DV); c32, s32: (H,) float32 (all contiguous)
    -> o: (B, H, N, DV) in v's dtype, lse: (B, H, N) float32, the ball points x = exp0(q) like q (the kernel maps
    q as it loads its query block, and k a key tile at a time, as the backward maps k again: _key_rows)."""
    Bsz, H, n, d = q.shape
    dv = v.shape[-1]
    BD, BDV, bm, bn, prec = _cfg(d, dv, q.dtype, window, block_m, block_n, n % 16 == 0)
    o = torch.empty(Bsz, H, n, dv, device=v.device, dtype=v.dtype)
    lse = torch.empty(Bsz, H, n, device=v.device, dtype=torch.float32)
    x = torch.empty_like(q)
    fp32 = q.dtype == torch.float32
    launch(_window_fwd_kernel, (cdiv(n, bm), Bsz * H),
        q, k, v, c32, s32, x, o, lse, n, H, window, 1.0 - BALL_EPS, MIN_NORM, D=d, DV=dv, BM=bm, BN=bn, BD=BD,
        BDV=BDV, PREC=prec, WIDE=_wide(window, bm, bn), FAST=not fp32, **_fwd_launch(BD, BDV, fp32, n % 16 == 0),
    )  # fmt: skip
    return o, lse, x


def _split_tiles(BD, BDV, fp32, aligned=True):
    """(BQ queries, BK keys) of the backward's dk/dv kernel and of its dq kernel. The folds want the folded side
    no wider than the other (dk/dv BQ <= BK, dq BK <= BQ). 16-bit inputs at head dims up to 64: query blocks of
    32 against key blocks of 64 (dk/dv), 64 against 32 (dq), the fastest of bench/tiles.py's sweep on the H100
    (run 16c of results/kernels/runs.md: the backward 3.78 / 4.10 ms at 16K with one kernel so, 4.84 with both
    at 32 x 32). Above head dim 64, 16 x 64 and 64 x 32 (run 40, (8, 16, N, 128) bf16, the backward with one
    kernel so: 7.95 and 7.39 ms at 16K, 1.011 and 0.977 at 2K, against 11.10 and 1.406 with both at 32 x 32, 8
    warps). Float32 and unaligned launches above head dim 64 (_big): 32 x 32, from the registers (not timed);
    float32 above head dim 64 folds 16 rows against 32: 32 x 32 takes 102,400-102,912 bytes of shared memory at
    128, above sm_89's 101,376."""
    if fp32 and _head_above_64(BD, BDV):
        return ((16, 32), (32, 16))
    if _big(BD, BDV, fp32, aligned):
        return ((32, 32), (32, 32))
    if _head_above_64(BD, BDV):
        return ((16, 64), (64, 32))
    return ((32, 64), (64, 32))


def _dkdv_launch(BD, BDV, fp32, aligned=True):
    """num_warps and num_stages of the backward's dk/dv kernel: one stage at 4 warps (run 16c: 5 % faster than
    two with 32 x 64 tiles; 8 warps took twice as long); two above head dim 64 (run 40: 1-2 % faster than one)."""
    if _big(BD, BDV, fp32, aligned):
        return dict(num_warps=8, num_stages=2)
    return dict(num_warps=4, num_stages=2 if _head_above_64(BD, BDV) else 1)


#: the dq kernel's register cap at 16-bit head dims up to 64 (_dq_launch)
DQ_MAXNREG = 168


def _dq_launch(BD, BDV, fp32, aligned=True):
    """num_warps and num_stages of the backward's dq kernel (run 16c: two stages 4 % faster than one). 16-bit
    inputs at head dims up to 64 with N a multiple of 16 (`aligned`, as Triton specialises the launch) also cap
    its registers at DQ_MAXNREG, so that three programs of four warps share an SM where 251 registers let two:
    the backward 2.556 against 2.764 ms at 16K, 0.337 against 0.363 at 2K on the H100 (run 18c of
    results/kernels/runs.md; the dk/dv kernel so capped gained under 1 %; run 20b, k mapped in the kernels: 168
    still the fastest). ptxas then spills 96 bytes a thread on sm_90 (456 on sm_80, not timed there); unaligned
    it spills 256 uncapped, so other N keep every register."""
    return _capped_launch(BD, BDV, fp32, aligned, DQ_MAXNREG)


def _rows_by_dot(BD, BDV, fp32):
    """Whether the backward kernels' epilogues reload their rows through the identity product (_reload_rows): 16-bit
    inputs at head dims up to 64 (the launchers' 64-row tiles), and up to 128 under triton before 3.9. On sm_90 at
    head dim 64, bf16, compiled here with triton 3.6 as a launch specialises them, it took the dq kernel from 4,088
    SASS instructions to 3,632 (its epilogue from 1,335 to 892, its 64 x 64 layout conversions from seven to one),
    the dk/dv kernel from 3,184 to 2,832 (six conversions to two), spill 192 -> 176 and 24 -> 40 bytes. On an H100,
    fwd+bwd at (8, 16, N, 64) from CUDA graphs took 0.3993 / 0.7772 / 1.5201 / 2.9752 ms at 2K / 4K / 8K / 16K
    against 0.4188 / 0.8076 / 1.5836 / 3.0905 with the plain reload (run 35 of results/kernels/runs.md); at
    (8, 16, N, 128) 1.774 / 14.06 ms at 2K / 16K against 1.862 / 14.72 (run 38; triton 3.6 spills nothing there).
    At head dim 128 triton 3.9 spills 144 bytes more (dk/dv) where it spilled none, so there it keeps the plain
    reload."""
    return not fp32 and (max(BD, BDV) <= 64 or (max(BD, BDV) <= 128 and TRITON_VERSION < (3, 9)))


def _split_plan(d, dv, dtype, window, block_m=None, block_n=None, aligned=True):
    """(kernel, constexprs, launch options) of the backward's dk/dv kernel, then its dq kernel, as
    _launch_bwd launches them for `window`: each with _split_tiles' BQ x BK, or block_m queries x block_n keys
    where given; `aligned`: N is a multiple of 16 (_dq_launch)."""
    BD, BDV, *_, prec = _cfg(d, dv, dtype, 0, None, None)
    fp32 = dtype == torch.float32
    tiles = _split_tiles(BD, BDV, fp32, aligned)
    launches = _dkdv_launch(BD, BDV, fp32, aligned), _dq_launch(BD, BDV, fp32, aligned)
    for fn, (bq, bk), opts in zip((_window_bwd_dkdv_kernel, _window_bwd_dq_kernel), tiles, launches, strict=True):
        bq, bk = block_m or bq, block_n or bk
        consts = dict(D=d, DV=dv, BQ=bq, BK=bk, BD=BD, BDV=BDV, PREC=prec, DOT_ROWS=_rows_by_dot(BD, BDV, fp32))
        if fn is _window_bwd_dkdv_kernel:
            yield fn, consts | dict(WIDE=_wide(window, bk, bq)), opts
        else:
            yield fn, consts | dict(WIDE=_wide(window, bq, bk), FAST=not fp32), opts


#: groups the backward splits its batch rows (or, for one row, its heads) into, alternating between two CUDA streams
#: (3, 4 and 8 were slower than 2 at 2K and 4K on an H100: run 33 of results/kernels/runs.md)
BWD_GROUPS = 2


def _grouped(device) -> bool:
    """Whether the backward runs in groups: while a CUDA graph is being captured, where the groups' extra launches
    cost the host nothing on replay. Eager calls keep one group: each launch is host time there
    (bench/host_ops.py), and eager runs at small shapes are bound by the host."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _groups(bsz, heads, grouped=True):
    """(axis, bounds): the backward's groups, BWD_GROUPS near-equal slices of the batch rows (axis 0) or, for a
    batch of one, of the heads (axis 1); a single group where neither has two, or where not `grouped`."""
    axis = 0 if bsz > 1 else 1
    size = (bsz, heads)[axis]
    count = max(1, min(BWD_GROUPS if grouped else 1, size))
    return axis, [size * i // count for i in range(count + 1)]


def _cut(t, axis, a, b):
    """Slice [a, b) of t along `axis`, or t itself where that is all of it: one group (every eager call) takes no
    views, each of which costs ~2 us of host time."""
    return t if b - a == t.shape[axis] else t.narrow(axis, a, b - a)


_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _side_stream(device) -> torch.cuda.Stream:
    """The backward's side stream on a CUDA device, made on its first call: _run_groups calls it on every CUDA
    call, so an eager warm-up makes it before any capture (docs/measurement.md: no lazy set-up inside one)."""
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]


def _run_groups(device, groups):
    """Runs each group's launches in order: group g on the current CUDA stream (even g) or on the side stream (odd
    g), forked from the current one first and joined back last (inside a CUDA graph capture too). One group, or a
    CPU (TRITON_INTERPRET=1), runs every launch on the current stream, one after another."""
    side = _side_stream(device) if device.type == "cuda" else None
    if side is None or len(groups) < 2:
        for launches in groups:
            for start in launches:
                start()
        return
    main = torch.cuda.current_stream(device)
    side.wait_stream(main)
    for g, launches in enumerate(groups):
        with torch.cuda.stream(main if g % 2 == 0 else side):
            for start in launches:
                start()
    main.wait_stream(side)


def _launch_bwd(do, o, q, k, x, v, c32, s32, lse, window, block_m, block_n):
    """do, o: (B, H, N, DV) in v's dtype; q, k: the tangent inputs; the rest as the forward's -> dq: like q,
    dk: like k, dv: like v, (dc, dscale): (2, H) float32. Two kernels: dk and dv per key block, then dq per query
    block (each stored once, exp0's backward in the kernels' epilogues, where each row's dy or dx is complete);
    their partial sums of dc and dscale share one buffer and one reduction, over its last dimension. The dq
    kernel runs first: it computes delta = sum(do * o, -1) and stores its keys' r and |y|^2 for the dk/dv kernel
    (_dq_delta, _store_key_rows). Captured in a CUDA graph (_grouped), the batch rows (or heads) run in groups
    (_groups), each group's two kernels on its own stream (_run_groups), so that one group's kernels fill the
    last, partial wave of the other's: 2.0 % off fwd+bwd at (8, 16, 2K, 64) bf16, 0.2 % at 16K, on the H100 (run
    29 of results/kernels/runs.md). The results are the same bit for bit as one group's: the groups store
    their partial sums where one group would (_slot's HEAD_SLOTS)."""
    Bsz, H, n, d = x.shape
    plan = _split_plan(d, v.shape[-1], x.dtype, window, block_m, block_n, aligned=n % 16 == 0)
    (dkdv, kc, kl), (dq_kernel, qc, ql) = plan
    nk, nq = cdiv(n, kc["BK"]), cdiv(n, qc["BQ"])
    delta = torch.empty(lse.shape, device=x.device, dtype=torch.float32)
    keys = torch.empty(Bsz, H, 2, n, device=x.device, dtype=torch.float32)  # r and |y|^2 of each key row
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    parts = torch.empty(2, H, Bsz * (nk + nq), device=x.device, dtype=torch.float32)  # of dc and dscale (_slot)
    axis, bounds = _groups(Bsz, H, _grouped(x.device))
    groups = []  # per group: its dq launch, then its dk/dv launch
    for a, b in itertools.pairwise(bounds):
        x_g, k_g, v_g, do_g, lse_g, delta_g, keys_g, q_g, dq_g, o_g, dk_g, dv_g = (
            _cut(t, axis, a, b) for t in (x, k, v, do, lse, delta, keys, q, dq, o, dk, dv)
        )
        if axis == 0:  # rows a to b of every head: a view from row a, heads B (nk + nq) slots apart
            c_g, s_g, heads = c32, s32, H
            part = parts if a == 0 else parts[..., a * (nk + nq) :]
        else:  # heads a to b of the one row
            c_g, s_g, heads, part = _cut(c32, 0, a, b), _cut(s32, 0, a, b), b - a, _cut(parts, 1, a, b)
        dc, dsc = part
        ins = (x_g, k_g, v_g, c_g, s_g, do_g, lse_g, delta_g, keys_g)
        scalars = (n, heads, window, nk + nq, parts.stride(1), 1.0 - BALL_EPS, MIN_NORM)
        programs = x_g.shape[0] * heads
        dq_args = (*ins, q_g, dq_g, o_g, dsc, dc, *scalars)
        dkdv_args = (*ins, dk_g, dv_g, dc, dsc, *scalars)
        dq_launch = functools.partial(launch, dq_kernel, (nq, programs), *dq_args, **qc, **ql)
        groups.append((dq_launch, functools.partial(launch, dkdv, (nk, programs), *dkdv_args, **kc, **kl)))
    _run_groups(x.device, groups)
    return dq, dk, dv, parts.sum(-1)


# Custom ops: dynamo and AOT autograd see each op as opaque (fake tensors give the shapes).


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k: (B, H, N, D) tangent vectors (one dtype); v: (B, H, N, DV); c, scale: (H,) float32; all contiguous
    -> o: (B, H, N, DV) in v's dtype, lse: (B, H, N) float32, and the ball points x = exp0(q)
    that the backward reads (one launch: _launch_fwd)."""
    return _launch_fwd(q, k, v, c, scale, window, block_m, block_n)


@torch.library.custom_op("phasebench::window_hyp_attn_bwd", mutates_args=())
def window_hyp_attn_bwd(
    do: torch.Tensor,
    o: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    x: torch.Tensor,
    v: torch.Tensor,
    c: torch.Tensor,
    scale: torch.Tensor,
    lse: torch.Tensor,
    window: int,
    block_m: int | None,
    block_n: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """do, o: (B, H, N, DV) in v's dtype; the rest as window_hyp_attn_fwd's inputs and outputs, all contiguous
    -> dq: like q, dk: like k, dv: like v, (dc, dscale): (2, H) float32. The attention's dx reaches exp0's
    backward in float32, in the dq kernel's epilogue (no cast in between)."""
    return _launch_bwd(do, o, q, k, x, v, c, scale, lse, window, block_m, block_n)


@window_hyp_attn_fwd.register_fake
def _(q, k, v, c, scale, window, block_m, block_n):
    o = v.new_empty((*q.shape[:-1], v.shape[-1]))
    return o, q.new_empty(q.shape[:-1], dtype=torch.float32), torch.empty_like(q)


@window_hyp_attn_bwd.register_fake
def _(do, o, q, k, x, v, c, scale, lse, window, block_m, block_n):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), c.new_empty(2, c.shape[0])


def _fwd_setup_context(ctx, inputs, output):
    q, k, v, c, scale, window, block_m, block_n = inputs
    o, lse, x = output
    ctx.mark_non_differentiable(lse, x)
    ctx.set_materialize_grads(False)  # their gradients stay None: no zeros kernels (x is q-sized) in backward
    ctx.save_for_backward(q, k, x, v, c, scale, o, lse)
    ctx.meta = (window, block_m, block_n)


def _fwd_backward(ctx, bwd, do, _dlse, _dx):
    q, k, x, v, c, scale, o, lse = ctx.saved_tensors
    do = do.to(v.dtype).contiguous()
    dq, dk, dv, dcs = bwd(do, o, q, k, x, v, c, scale, lse, *ctx.meta)
    return dq, dk, dv, *dcs.unbind(), None, None, None


_window_hyp_attn = differentiable_op(window_hyp_attn_fwd, window_hyp_attn_bwd, _fwd_setup_context, _fwd_backward)


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
    return _window_hyp_attn(q, k, v.contiguous(), c32, s32, int(window), block_m, block_n)[0]
