"""Triton BK-Core (float32, real and imaginary parts carried separately) on (B, N, C) tensors.

One program owns BLOCK_C channels of one batch row (loads coalesced along C) and one segment of L
positions; inside a segment the recurrence runs sequentially, 8 rows a loop step, without row masks but in the
segment's last step when its length is not a multiple of 8. Each step of the segment maps, the forward sweep and
the first adjoint pass loads the next step's rows before its own arithmetic (`*_prefetched`), so they are in
flight while it runs; the adjoint sweep, right to left, loads its step's rows first. The look-back
(lookback.py) shares the 4-row loops (`_segment_product`, `_sweep_rows`, `_adj_segment`). Offsets within a batch row
are int32 (N * C < 2^31), and 1/x takes the hardware's reciprocal (kernels/fastmath.py).
A direction flag REVERSE maps logical index i to row N-1-i, so the right-to-left sweep of the
bidirectional core is the same kernel.

Every sweep and adjoint first runs a halo kernel, one launch each way, and no carry scan: the resolvent forgets its
boundary (two forward trajectories from different carries draw together by b2 |g_i| |g'_i| a row; the adjoint's
carry fades by b2 |g_i|^2), so each segment finds its carry from the rows just before it (forward) or just after
it (adjoint), growing that halo 8 rows at a time until a guard passes:
  `_halo_sweep_kernel`: the Mobius product P of the halo rows (prepended right to left, rescaled by powers of two,
     whose exponents it sums so that det P = b2^rows 2^(-2 sum) is exact) gives the carry P(0); every carry the
     earlier rows could hand in lies in the upper half-plane, which P maps onto a disk of radius |det P| / (2
     |Im(p10 conj(p11))|), and the halo stops when that is within 2^LOG2_TOL |P(0)| for every channel.
  `_halo_adj_kernel`: the first adjoint pass's composite (Cc, Dc) over the halo rows after the segment, g
     recomputed from the next segment's carry; mu entering the segment is Dc, off by Cc mu at the halo's end, and
     the halo stops when |Cc| <= TOL_ADJ.
A halo that reaches the sequence's start (forward) or end (adjoint) is exact. One that takes MAX_HALO rows with the
guard still failing flags its batch row and channel block, and the two-pass kernels below, launched after it with
GATED, redo those on the device (each of their programs returns at once where nothing is flagged), so a step stays
graph-safe. Per element
at L = 128 and halos of ~48 rows (the bench's inputs) the halo kernels move ~14 bytes forward and ~21 backward.

The two-pass kernels (the fallback; alone where there is one segment or max_halo is 0):
Forward (causal sweep g_i = 1/(a_i - b2 g_{i-1}), a = h0 + v - z, b2 = beta^2):
  1. `_seg_map_kernel`: per segment, the Mobius product P_s = M_last ... M_first, M = [[0, 1], [-b2, a]]
     (rescaled every 4 rows), for segments 0..S-2.
  2. `_seg_carry_kernel`: an associative scan over segments, Q_s = P_s ... P_0 (later on the left);
     the carry into segment s is Q_{s-1}(0) (0 for s = 0).
  3. `_sweep_kernel`: re-run each segment from its carry and write g.
Backward (mu_i = conj(g_i^2) (gbar_i + b2 mu_{i+1}), runs right to left):
  1. `_adj_seg_kernel`: per segment, the affine composite mu_first = Cc mu_next + Dc, accumulated left to
     right (Dc += Pc d_i, Pc *= c_i with c_i = b2 conj(g_i^2), d_i = conj(g_i^2) gbar_i), segments 1..S-1.
     Left to right is the forward's order: it recomputes g from v and the forward's carry into the segment
     (bk_core_fwd returns the carries) rather than read g, 4 bytes an element fewer.
  2. `_adj_carry_kernel`: an associative scan over the mirrored segment order gives the mu entering
     each segment from the right.
  3. `_adj_sweep_kernel`: re-run each segment right to left, 8 rows a step, each step's g recomputed from v
     and the g before it (the segment's carry, or the stored g of the row before the step: one row of g read
     in 8); write dv = -Re mu and per-program sums of Re mu, Im mu and Re(conj(g_{i-1}) mu_i) (the b2 gradient).
Bidirectional: the two sweeps here, the pointwise glue (G from gL, gR; their upstream gradients) in torch.
Memory traffic per element of the two-pass kernels, causal: forward 4 + 12 bytes, backward 12 + 17 bytes.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from kernels.custom_op import differentiable_op
from kernels.fastmath import rcp_approx
from kernels.grid import cdiv, next_power_of_2
from kernels.launch import launch
from kernels.masking import keep

UNROLL = 4  # rows per unrolled step; segment lengths are multiples of it
# the first adjoint pass's register cap: uncapped it takes 72 (the next step's 24 loads in flight), 14 programs an
# SM, where (16, 16384, 64) runs 2,032 programs, 16 an SM on an H100; at 64 (32 bytes spilled) it ran 5 % faster
# there and level at the model shapes (run 25c of results/kernels/runs.md)
ADJ_SEG_MAXNREG = 64
# the halo kernels' halos: at most MAX_HALO rows, grown until a carry's uncertainty is within 2^LOG2_TOL of it
# forward and |Cc| <= TOL_ADJ backward; at (16, 16384, 64) on an H100 fwd+bwd took 0.2317 ms with halos of at most
# 256 rows against the two-pass kernels' 0.2975 (run 45c of results/kernels/runs.md, the kernels as prepared there)
MAX_HALO = 256
LOG2_TOL = -24.0
TOL_ADJ = 2.0**-30


# ----------------------------------------------------------------------------------------------- helpers
@triton.jit
def _cf_step(gr, gi, x, valid, ar0, ai, b2, MASKED: tl.constexpr):
    """g <- 1/(ar0 + x - i*ai - b2 g) where valid, else g unchanged."""
    dr = ar0 + x - b2 * gr
    di = -ai - b2 * gi
    inv = rcp_approx(dr * dr + di * di)
    return keep(valid, dr * inv, gr, MASKED), keep(valid, -di * inv, gi, MASKED)


@triton.jit
def _mat_step(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x, valid, ar0, ai, b2, MASKED: tl.constexpr):
    """P <- M P with M = [[0, 1], [-b2, a]], a = ar0 + x - i*ai; P unchanged where not valid."""
    ar = ar0 + x
    ai_ = -ai
    n10r = -b2 * p00r + ar * p10r - ai_ * p10i
    n10i = -b2 * p00i + ar * p10i + ai_ * p10r
    n11r = -b2 * p01r + ar * p11r - ai_ * p11i
    n11i = -b2 * p01i + ar * p11i + ai_ * p11r
    return (
        keep(valid, p10r, p00r, MASKED),
        keep(valid, p10i, p00i, MASKED),
        keep(valid, p11r, p01r, MASKED),
        keep(valid, p11i, p01i, MASKED),
        keep(valid, n10r, p10r, MASKED),
        keep(valid, n10i, p10i, MASKED),
        keep(valid, n11r, p11r, MASKED),
        keep(valid, n11i, p11i, MASKED),
    )


@triton.jit
def _max8(a, b, c, d, e, f, g, h):
    m1 = tl.maximum(tl.maximum(tl.abs(a), tl.abs(b)), tl.maximum(tl.abs(c), tl.abs(d)))
    m2 = tl.maximum(tl.maximum(tl.abs(e), tl.abs(f)), tl.maximum(tl.abs(g), tl.abs(h)))
    return tl.maximum(tl.maximum(m1, m2), 1e-30)


@triton.jit
def _store_mat(out, C, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i):
    """A 2x2 complex matrix of (BLOCK_C,) entries at out + k C, k = 0..7 (p00 re, im, p01, p10, p11)."""
    tl.store(out, p00r, mask=cmask)
    tl.store(out + C, p00i, mask=cmask)
    tl.store(out + 2 * C, p01r, mask=cmask)
    tl.store(out + 3 * C, p01i, mask=cmask)
    tl.store(out + 4 * C, p10r, mask=cmask)
    tl.store(out + 5 * C, p10i, mask=cmask)
    tl.store(out + 6 * C, p11r, mask=cmask)
    tl.store(out + 7 * C, p11i, mask=cmask)


@triton.jit
def _mat_combine(e00r, e00i, e01r, e01i, e10r, e10i, e11r, e11i, l00r, l00i, l01r, l01i, l10r, l10i, l11r, l11i):
    """Scan combine: earlier product E, later L -> L @ E, rescaled to max entry 1."""
    n00r = l00r * e00r - l00i * e00i + l01r * e10r - l01i * e10i
    n00i = l00r * e00i + l00i * e00r + l01r * e10i + l01i * e10r
    n01r = l00r * e01r - l00i * e01i + l01r * e11r - l01i * e11i
    n01i = l00r * e01i + l00i * e01r + l01r * e11i + l01i * e11r
    n10r = l10r * e00r - l10i * e00i + l11r * e10r - l11i * e10i
    n10i = l10r * e00i + l10i * e00r + l11r * e10i + l11i * e10r
    n11r = l10r * e01r - l10i * e01i + l11r * e11r - l11i * e11i
    n11i = l10r * e01i + l10i * e01r + l11r * e11i + l11i * e11r
    s = 1.0 / _max8(n00r, n00i, n01r, n01i, n10r, n10i, n11r, n11i)
    return n00r * s, n00i * s, n01r * s, n01i * s, n10r * s, n10i * s, n11r * s, n11i * s


@triton.jit
def _affine_combine(c1r, c1i, d1r, d1i, c2r, c2i, d2r, d2i):
    """Scan combine of complex affine maps x -> c x + d: earlier (c1, d1), later (c2, d2)."""
    return (c2r * c1r - c2i * c1i, c2r * c1i + c2i * c1r, c2r * d1r - c2i * d1i + d2r, c2r * d1i + c2i * d1r + d2i)


@triton.jit
def _adj_compose(gr, gi, gbr, gbi, valid, b2, pcr, pci, dcr, dci, MASKED: tl.constexpr):
    """Append step i to the composite mu_first = Pc mu_i + Dc: Dc += Pc d_i, Pc *= c_i, where
    c_i = b2 conj(g_i^2), d_i = conj(g_i^2) gbar_i; no-op where not valid."""
    sr = gr * gr - gi * gi
    si = -2.0 * gr * gi
    dr = sr * gbr - si * gbi
    di = sr * gbi + si * gbr
    cr = b2 * sr
    ci = b2 * si
    ndr = dcr + pcr * dr - pci * di
    ndi = dci + pcr * di + pci * dr
    npr = pcr * cr - pci * ci
    npi = pcr * ci + pci * cr
    return (
        keep(valid, npr, pcr, MASKED),
        keep(valid, npi, pci, MASKED),
        keep(valid, ndr, dcr, MASKED),
        keep(valid, ndi, dci, MASKED),
    )


@triton.jit
def _adj_compose4(g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, r0, j0, r1, j1, r2, j2, r3, j3, k0, k1, k2, k3, b2, pcr, pci,
                  dcr, dci, MASKED: tl.constexpr):  # fmt: skip
    """The composite (Pc, Dc) with 4 rows appended in order, from their g and dg (r re, j im) -> Pc, Dc re, im."""
    pcr, pci, dcr, dci = _adj_compose(g0r, g0i, r0, j0, k0, b2, pcr, pci, dcr, dci, MASKED)
    pcr, pci, dcr, dci = _adj_compose(g1r, g1i, r1, j1, k1, b2, pcr, pci, dcr, dci, MASKED)
    pcr, pci, dcr, dci = _adj_compose(g2r, g2i, r2, j2, k2, b2, pcr, pci, dcr, dci, MASKED)
    return _adj_compose(g3r, g3i, r3, j3, k3, b2, pcr, pci, dcr, dci, MASKED)


@triton.jit
def _adj_step(gr, gi, gbr, gbi, valid, mr, mi, b2, acc_r, acc_i, acc_b, MASKED: tl.constexpr):
    """mu_i = conj(g_i^2)(gbar_i + b2 mu_{i+1}); b2-gradient term Re(conj(g_i) mu_{i+1}) (belongs to i+1)."""
    acc_b += keep(valid, gr * mr + gi * mi, 0.0, MASKED)
    lr = gbr + b2 * mr
    li = gbi + b2 * mi
    sr = gr * gr - gi * gi
    si = -2.0 * gr * gi
    nr = sr * lr - si * li
    ni = sr * li + si * lr
    acc_r += keep(valid, nr, 0.0, MASKED)
    acc_i += keep(valid, ni, 0.0, MASKED)
    return keep(valid, nr, mr, MASKED), keep(valid, ni, mi, MASKED), acc_r, acc_i, acc_b, -nr


@triton.jit
def _vmask(cmask, i, end):
    """cmask & (i < end) as a vector (a scalar-vector `&` is mistyped by the interpreter)."""
    return cmask & ((cmask.to(tl.int32) * 0 + i) < end)


@triton.jit
def _row(i, N, REVERSE: tl.constexpr):
    if REVERSE:
        return N - 1 - i
    else:
        return i


@triton.jit
def _channel_params(H0, BETA, ZRE, ZIM, cols, cmask):
    h0 = tl.load(H0 + cols, mask=cmask, other=0.0)
    beta = tl.load(BETA + cols, mask=cmask, other=0.0)
    zre = tl.load(ZRE + cols, mask=cmask, other=0.0)
    zim = tl.load(ZIM + cols, mask=cmask, other=1.0)
    return h0 - zre, zim, beta * beta


@triton.jit
def _segment_value(P, b, s, S, C, cols, cmask):
    """A complex value a segment and channel from P (B, S, 2, C) (a carry: g entering the segment, or mu entering
    it from the right) -> re, im (BLOCK_C,)."""
    p = P + (b.to(tl.int64) * S + s) * 2 * C + cols
    return tl.load(p, mask=cmask, other=0.0), tl.load(p + C, mask=cmask, other=0.0)


@triton.jit
def _flag_unset(FLAG, i):
    """Whether FLAG[i] (int32) is 0: a gated program's (batch row, channel block) needs no fallback."""
    return tl.load(FLAG + i) == 0


@triton.jit
def _raise_flag(FLAG, bad):
    """FLAG[program_id(0)] = 1 (its batch row and channel block) where any of bad (BLOCK_C,) is set; every writer
    writes 1, so no atomic is needed."""
    tl.store(FLAG + tl.program_id(0), 1, mask=tl.max(bad.to(tl.int32), 0) > 0)


# ----------------------------------------------------------------------------------------------- kernels
@triton.jit
def _quad(i, end, cmask, N, C, REVERSE: tl.constexpr, cols, MASKED: tl.constexpr):
    """The 4 logical rows i .. i+3 of a 4-row step: their masks (cmask where the row is below end; cmask alone
    in a bulk step) and offsets in the batch row (cols + row * C, int32) -> k0, k1, k2, k3, o0, o1, o2, o3."""
    if MASKED:
        k0 = _vmask(cmask, i, end)
        k1 = _vmask(cmask, i + 1, end)
        k2 = _vmask(cmask, i + 2, end)
        k3 = _vmask(cmask, i + 3, end)
    else:
        k0, k1, k2, k3 = cmask, cmask, cmask, cmask
    o0 = cols + _row(i, N, REVERSE) * C
    o1 = cols + _row(i + 1, N, REVERSE) * C
    o2 = cols + _row(i + 2, N, REVERSE) * C
    o3 = cols + _row(i + 3, N, REVERSE) * C
    return k0, k1, k2, k3, o0, o1, o2, o3


@triton.jit
def _program(C, n_cblk, BLOCK_C: tl.constexpr):
    """A segment program's segment s (grid axis 1), batch row b and channels (BLOCK_C,) with their mask (axis 0
    runs over batch rows x channel blocks)."""
    pid = tl.program_id(0)
    cols = (pid % n_cblk) * BLOCK_C + tl.arange(0, BLOCK_C)
    return tl.program_id(1), pid // n_cblk, cols, cols < C


@triton.jit
def _load4(P, k0, k1, k2, k3, o0, o1, o2, o3):
    """P at a 4-row step's offsets, 0 where masked (_quad) -> x0, x1, x2, x3."""
    x0 = tl.load(P + o0, mask=k0, other=0.0)
    x1 = tl.load(P + o1, mask=k1, other=0.0)
    x2 = tl.load(P + o2, mask=k2, other=0.0)
    x3 = tl.load(P + o3, mask=k3, other=0.0)
    return x0, x1, x2, x3


@triton.jit
def _adj_row(GR, GI, DGR, DGI, o, k):
    """One row of the adjoint's inputs, 0 where masked -> g re, im, dg re, im."""
    gr = tl.load(GR + o, mask=k, other=0.0)
    gi = tl.load(GI + o, mask=k, other=0.0)
    br = tl.load(DGR + o, mask=k, other=0.0)
    bi = tl.load(DGI + o, mask=k, other=0.0)
    return gr, gi, br, bi


@triton.jit
def _product_step(vb, cols, i, end, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, ar0, ai, b2, N, C,
                  REVERSE: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """P <- M_{i+3} ... M_i P (loads first), rescaled -> its 8 entries."""
    k0, k1, k2, k3, o0, o1, o2, o3 = _quad(i, end, cmask, N, C, REVERSE, cols, MASKED)
    x0, x1, x2, x3 = _load4(vb, k0, k1, k2, k3, o0, o1, o2, o3)
    return _mat4(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2, MASKED)


@triton.jit
def _mat4(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2,
          MASKED: tl.constexpr):  # fmt: skip
    """P <- M_3 ... M_0 P with the potentials x0 .. x3, rescaled -> its 8 entries."""
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat_step(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, k0, ar0, ai, b2, MASKED
    )
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat_step(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x1, k1, ar0, ai, b2, MASKED
    )
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat_step(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x2, k2, ar0, ai, b2, MASKED
    )
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat_step(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x3, k3, ar0, ai, b2, MASKED
    )
    sc = rcp_approx(_max8(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i))
    return p00r * sc, p00i * sc, p01r * sc, p01i * sc, p10r * sc, p10i * sc, p11r * sc, p11i * sc


@triton.jit
def _segment_product(vb, cols, start, end, cmask, ar0, ai, b2, N, C, REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):
    """P = M_last ... M_first over the logical rows start .. end-1 of the batch row vb (at cols + row C), 4 rows a
    step (loads first), rescaled every step -> its 8 entries (p00, p01, p10, p11 re/im), (BLOCK_C,) each. The
    steps whose rows are all below end run without row masks; the rest, at most one, with them."""
    one = tl.full([BLOCK_C], 1.0, tl.float32)
    zero = tl.zeros([BLOCK_C], tl.float32)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = one, zero, zero, zero, zero, zero, one, zero
    bulk = (end - start) // 4 * 4
    for j in range(0, bulk, 4):
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _product_step(
            vb, cols, start + j, end, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, ar0, ai, b2, N, C,
            REVERSE, False,
        )  # fmt: skip
    for j in range(bulk, end - start, 4):
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _product_step(
            vb, cols, start + j, end, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, ar0, ai, b2, N, C,
            REVERSE, True,
        )  # fmt: skip
    return p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i


@triton.jit
def _rows8(P, cols, i, end, cmask, N, C, REVERSE: tl.constexpr):
    """P at the logical rows i .. i+7, 0 at and past end -> 8 values."""
    ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3 = _quad(i, end, cmask, N, C, REVERSE, cols, True)
    kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3 = _quad(i + 4, end, cmask, N, C, REVERSE, cols, True)
    x0, x1, x2, x3 = _load4(P, ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3)
    x4, x5, x6, x7 = _load4(P, kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3)
    return x0, x1, x2, x3, x4, x5, x6, x7


@triton.jit
def _masks8(cmask, i, end, MASKED: tl.constexpr):
    """The masks of the rows i .. i+7: cmask where the row is below end (cmask alone unless MASKED)."""
    k0, k1, k2, k3, k4, k5, k6, k7 = cmask, cmask, cmask, cmask, cmask, cmask, cmask, cmask
    if MASKED:
        k0 = _vmask(cmask, i, end)
        k1 = _vmask(cmask, i + 1, end)
        k2 = _vmask(cmask, i + 2, end)
        k3 = _vmask(cmask, i + 3, end)
        k4 = _vmask(cmask, i + 4, end)
        k5 = _vmask(cmask, i + 5, end)
        k6 = _vmask(cmask, i + 6, end)
        k7 = _vmask(cmask, i + 7, end)
    return k0, k1, k2, k3, k4, k5, k6, k7


@triton.jit
def _mat8(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, i, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7, ar0, ai,
          b2, MASKED: tl.constexpr):  # fmt: skip
    """P <- M_{i+7} ... M_i P with the rows' potentials x0 .. x7, rescaled every 4 rows -> its 8 entries."""
    k0, k1, k2, k3, k4, k5, k6, k7 = _masks8(cmask, i, end, MASKED)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat4(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2, MASKED
    )
    return _mat4(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x4, x5, x6, x7, k4, k5, k6, k7, ar0, ai, b2, MASKED)


@triton.jit
def _segment_product_prefetched(vb, cols, start, end, cmask, ar0, ai, b2, N, C, REVERSE: tl.constexpr,
                                BLOCK_C: tl.constexpr):  # fmt: skip
    """As _segment_product, 8 rows a loop step, each step loading the next step's rows before its own arithmetic."""
    one = tl.full([BLOCK_C], 1.0, tl.float32)
    zero = tl.zeros([BLOCK_C], tl.float32)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = one, zero, zero, zero, zero, zero, one, zero
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(vb, cols, start, end, cmask, N, C, REVERSE)
    bulk = (end - start) // 8 * 8
    for j in range(0, bulk, 8):
        y0, y1, y2, y3, y4, y5, y6, y7 = _rows8(vb, cols, start + j + 8, end, cmask, N, C, REVERSE)
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat8(
            p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, start + j, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7,
            ar0, ai, b2, False,
        )  # fmt: skip
        x0, x1, x2, x3, x4, x5, x6, x7 = y0, y1, y2, y3, y4, y5, y6, y7
    for j in range(bulk, end - start, 8):  # the rows past the last multiple of 8, already loaded
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat8(
            p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, start + j, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7,
            ar0, ai, b2, True,
        )  # fmt: skip
    return p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i


@triton.jit
def _store8(grb, gib, cols, i, end, cmask, g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, g4r, g4i, g5r, g5i, g6r, g6i, g7r,
            g7i, N, C, REVERSE: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """g of the logical rows i .. i+7 written to grb, gib (row masks as _quad's)."""
    ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3 = _quad(i, end, cmask, N, C, REVERSE, cols, MASKED)
    kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3 = _quad(i + 4, end, cmask, N, C, REVERSE, cols, MASKED)
    _store4(grb, gib, ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3, g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i)
    _store4(grb, gib, kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3, g4r, g4i, g5r, g5i, g6r, g6i, g7r, g7i)


@triton.jit
def _store4(grb, gib, k0, k1, k2, k3, o0, o1, o2, o3, g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i):
    """g of a 4-row step (_quad's masks and offsets) written to grb, gib."""
    tl.store(grb + o0, g0r, mask=k0)
    tl.store(gib + o0, g0i, mask=k0)
    tl.store(grb + o1, g1r, mask=k1)
    tl.store(gib + o1, g1i, mask=k1)
    tl.store(grb + o2, g2r, mask=k2)
    tl.store(gib + o2, g2i, mask=k2)
    tl.store(grb + o3, g3r, mask=k3)
    tl.store(gib + o3, g3i, mask=k3)


@triton.jit
def _cf8(gr, gi, i, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7, ar0, ai, b2, MASKED: tl.constexpr):
    """g over the rows i .. i+7 with their potentials x0 .. x7 from the g before them -> 16 values (re, im each)."""
    k0, k1, k2, k3, k4, k5, k6, k7 = _masks8(cmask, i, end, MASKED)
    g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i = _cf4(gr, gi, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2, MASKED)
    g4r, g4i, g5r, g5i, g6r, g6i, g7r, g7i = _cf4(g3r, g3i, x4, x5, x6, x7, k4, k5, k6, k7, ar0, ai, b2, MASKED)
    return g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, g4r, g4i, g5r, g5i, g6r, g6i, g7r, g7i


@triton.jit
def _sweep_rows_prefetched(vb, grb, gib, cols, gr, gi, start, end, cmask, ar0, ai, b2, N, C, REVERSE: tl.constexpr):
    """As _sweep_rows, 8 rows a loop step, each step loading the next step's potentials before its own arithmetic
    and stores."""
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(vb, cols, start, end, cmask, N, C, REVERSE)
    bulk = (end - start) // 8 * 8
    for j in range(0, bulk, 8):
        y0, y1, y2, y3, y4, y5, y6, y7 = _rows8(vb, cols, start + j + 8, end, cmask, N, C, REVERSE)
        g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, g4r, g4i, g5r, g5i, g6r, g6i, gr, gi = _cf8(
            gr, gi, start + j, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7, ar0, ai, b2, False
        )
        _store8(grb, gib, cols, start + j, end, cmask, g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, g4r, g4i, g5r, g5i,
                g6r, g6i, gr, gi, N, C, REVERSE, False)  # fmt: skip
        x0, x1, x2, x3, x4, x5, x6, x7 = y0, y1, y2, y3, y4, y5, y6, y7
    for j in range(bulk, end - start, 8):  # the rows past the last multiple of 8, already loaded
        g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, g4r, g4i, g5r, g5i, g6r, g6i, gr, gi = _cf8(
            gr, gi, start + j, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7, ar0, ai, b2, True
        )
        _store8(grb, gib, cols, start + j, end, cmask, g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, g4r, g4i, g5r, g5i,
                g6r, g6i, gr, gi, N, C, REVERSE, True)  # fmt: skip


@triton.jit
def _cf_quad(vb, gr, gi, k0, k1, k2, k3, o0, o1, o2, o3, ar0, ai, b2, MASKED: tl.constexpr):
    """g over a 4-row step (_quad's masks and offsets) from the g before it (gr, gi) and the potentials at vb
    -> g re, im of its rows 0 .. 3 (8 values)."""
    x0, x1, x2, x3 = _load4(vb, k0, k1, k2, k3, o0, o1, o2, o3)
    return _cf4(gr, gi, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2, MASKED)


@triton.jit
def _cf4(gr, gi, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2, MASKED: tl.constexpr):
    """g over 4 rows with the potentials x0 .. x3 from the g before them (gr, gi) -> g re, im of each (8 values)."""
    gr0, gi0 = _cf_step(gr, gi, x0, k0, ar0, ai, b2, MASKED)
    gr1, gi1 = _cf_step(gr0, gi0, x1, k1, ar0, ai, b2, MASKED)
    gr2, gi2 = _cf_step(gr1, gi1, x2, k2, ar0, ai, b2, MASKED)
    gr3, gi3 = _cf_step(gr2, gi2, x3, k3, ar0, ai, b2, MASKED)
    return gr0, gi0, gr1, gi1, gr2, gi2, gr3, gi3


@triton.jit
def _sweep_step(vb, grb, gib, cols, gr, gi, i, end, cmask, ar0, ai, b2, N, C, REVERSE: tl.constexpr,
                MASKED: tl.constexpr):  # fmt: skip
    """g over the rows i .. i+3 from (gr, gi), written (loads first) -> g of row i+3."""
    k0, k1, k2, k3, o0, o1, o2, o3 = _quad(i, end, cmask, N, C, REVERSE, cols, MASKED)
    gr0, gi0, gr1, gi1, gr2, gi2, gr, gi = _cf_quad(vb, gr, gi, k0, k1, k2, k3, o0, o1, o2, o3, ar0, ai, b2, MASKED)
    _store4(grb, gib, k0, k1, k2, k3, o0, o1, o2, o3, gr0, gi0, gr1, gi1, gr2, gi2, gr, gi)
    return gr, gi


@triton.jit
def _sweep_rows(vb, grb, gib, cols, gr, gi, start, end, cmask, ar0, ai, b2, N, C, REVERSE: tl.constexpr):
    """g over the logical rows start .. end-1 of the batch rows vb, grb, gib (at cols + row C) from the carry
    (gr, gi), written to grb, gib, 4 rows a step (loads first; row masks as _segment_product's)."""
    bulk = (end - start) // 4 * 4
    for j in range(0, bulk, 4):
        gr, gi = _sweep_step(vb, grb, gib, cols, gr, gi, start + j, end, cmask, ar0, ai, b2, N, C, REVERSE, False)
    for j in range(bulk, end - start, 4):
        gr, gi = _sweep_step(vb, grb, gib, cols, gr, gi, start + j, end, cmask, ar0, ai, b2, N, C, REVERSE, True)


@triton.jit
def _seg_map_kernel(V, H0, BETA, ZRE, ZIM, PM, FLAG, N, C, L, S, n_cblk, REVERSE: tl.constexpr, BLOCK_C: tl.constexpr,
                    GATED: tl.constexpr):  # fmt: skip
    """PM (B, S, 8, C): Mobius product of segment s (s < S-1) as (p00, p01, p10, p11) re/im. GATED: only where FLAG
    (B n_cblk,) is set (_flag_unset)."""
    if GATED:
        if _flag_unset(FLAG, tl.program_id(0)):
            return
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    start = s * L
    vb = V + b.to(tl.int64) * N * C
    end = tl.minimum(start + L, N)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _segment_product_prefetched(
        vb, cols, start, end, cmask, ar0, ai, b2, N, C, REVERSE, BLOCK_C
    )
    out = PM + (b.to(tl.int64) * S + s) * 8 * C + cols
    _store_mat(out, C, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i)


@triton.jit
def _seg_carry_kernel(PM, W, FLAG, C, S, n_cblk, n_flag, per_flag, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
                      GATED: tl.constexpr):  # fmt: skip
    """W (B, S, 2, C): g entering segment s, = (P_{s-1} ... P_0)(0); 0 for s = 0. GATED: only where FLAG (B n_flag,)
    is set for the program's channels (per_flag programs share a segment kernel's channel block)."""
    pid = tl.program_id(0)
    if GATED:
        if _flag_unset(FLAG, (pid // n_cblk) * n_flag + (pid % n_cblk) // per_flag):
            return
    b = pid // n_cblk
    cols = (pid % n_cblk) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    sidx = tl.arange(0, BLOCK_S)
    m = ((sidx >= 1) & (sidx < S))[:, None] & cmask[None, :]
    src = PM + (b.to(tl.int64) * S + (sidx - 1))[:, None] * 8 * C + cols[None, :]
    p00r = tl.load(src, mask=m, other=1.0)
    p00i = tl.load(src + C, mask=m, other=0.0)
    p01r = tl.load(src + 2 * C, mask=m, other=0.0)
    p01i = tl.load(src + 3 * C, mask=m, other=0.0)
    p10r = tl.load(src + 4 * C, mask=m, other=0.0)
    p10i = tl.load(src + 5 * C, mask=m, other=0.0)
    p11r = tl.load(src + 6 * C, mask=m, other=1.0)
    p11i = tl.load(src + 7 * C, mask=m, other=0.0)
    q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i = tl.associative_scan(
        (p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i), axis=0, combine_fn=_mat_combine
    )
    inv = 1.0 / (q11r * q11r + q11i * q11i)
    wr = (q01r * q11r + q01i * q11i) * inv
    wi = (q01i * q11r - q01r * q11i) * inv
    dst = W + (b.to(tl.int64) * S + sidx)[:, None] * 2 * C + cols[None, :]
    sm = (sidx < S)[:, None] & cmask[None, :]
    tl.store(dst, wr, mask=sm)
    tl.store(dst + C, wi, mask=sm)


@triton.jit
def _sweep_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, FLAG, N, C, L, S, n_cblk, REVERSE: tl.constexpr,
                  BLOCK_C: tl.constexpr, GATED: tl.constexpr):  # fmt: skip
    """GR, GI (B, N, C): the continued fraction, each segment started from its carry in W. GATED: as _seg_map's."""
    if GATED:
        if _flag_unset(FLAG, tl.program_id(0)):
            return
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    bn = b.to(tl.int64) * N * C
    gr, gi = _segment_value(W, b, s, S, C, cols, cmask)
    start = s * L
    end = tl.minimum(start + L, N)
    _sweep_rows_prefetched(V + bn, GR + bn, GI + bn, cols, gr, gi, start, end, cmask, ar0, ai, b2, N, C, REVERSE)


@triton.jit
def _adj_seg_step(GR, GI, DGR, DGI, cols, i, end, cmask, b2, pcr, pci, dcr, dci, N, C, REVERSE: tl.constexpr,
                  MASKED: tl.constexpr):  # fmt: skip
    """The composite (Pc, Dc) with the rows i .. i+3 appended, g and dg loaded first -> Pc re, im, Dc re, im."""
    k0, k1, k2, k3, o0, o1, o2, o3 = _quad(i, end, cmask, N, C, REVERSE, cols, MASKED)
    br0, br1, br2, br3 = _load4(DGR, k0, k1, k2, k3, o0, o1, o2, o3)
    bi0, bi1, bi2, bi3 = _load4(DGI, k0, k1, k2, k3, o0, o1, o2, o3)
    gr0, gr1, gr2, gr3 = _load4(GR, k0, k1, k2, k3, o0, o1, o2, o3)
    gi0, gi1, gi2, gi3 = _load4(GI, k0, k1, k2, k3, o0, o1, o2, o3)
    return _adj_compose4(gr0, gi0, gr1, gi1, gr2, gi2, gr3, gi3, br0, bi0, br1, bi1, br2, bi2, br3, bi3, k0, k1, k2, k3,
                         b2, pcr, pci, dcr, dci, MASKED)  # fmt: skip


@triton.jit
def _adj_segment(GR, GI, DGR, DGI, cols, start, end, cmask, b2, N, C, REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):
    """The composite mu_first = Pc mu_next + Dc over the logical rows start .. end-1 of the batch rows GR, GI, DGR,
    DGI (at cols + row C), accumulated left to right, 4 rows a step (loads first; row masks as
    _segment_product's) -> (Pc re, im, Dc re, im), (BLOCK_C,) each."""
    pcr = tl.full([BLOCK_C], 1.0, tl.float32)
    pci = tl.zeros([BLOCK_C], tl.float32)
    dcr = tl.zeros([BLOCK_C], tl.float32)
    dci = tl.zeros([BLOCK_C], tl.float32)
    bulk = (end - start) // 4 * 4
    for j in range(0, bulk, 4):
        pcr, pci, dcr, dci = _adj_seg_step(
            GR, GI, DGR, DGI, cols, start + j, end, cmask, b2, pcr, pci, dcr, dci, N, C, REVERSE, False
        )
    for j in range(bulk, end - start, 4):
        pcr, pci, dcr, dci = _adj_seg_step(
            GR, GI, DGR, DGI, cols, start + j, end, cmask, b2, pcr, pci, dcr, dci, N, C, REVERSE, True
        )
    return pcr, pci, dcr, dci


@triton.jit
def _adj_rows8(V, DGR, DGI, cols, i, end, cmask, N, C, REVERSE: tl.constexpr):
    """v, dg re and dg im of the rows i .. i+7 (0 at and past end) -> 24 values: v, then dg re, then dg im."""
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(V, cols, i, end, cmask, N, C, REVERSE)
    r0, r1, r2, r3, r4, r5, r6, r7 = _rows8(DGR, cols, i, end, cmask, N, C, REVERSE)
    j0, j1, j2, j3, j4, j5, j6, j7 = _rows8(DGI, cols, i, end, cmask, N, C, REVERSE)
    return x0, x1, x2, x3, x4, x5, x6, x7, r0, r1, r2, r3, r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7


@triton.jit
def _adj_compose8(i, end, cmask, ar0, ai, b2, gr, gi, pcr, pci, dcr, dci, x0, x1, x2, x3, x4, x5, x6, x7, r0, r1,
                  r2, r3, r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7, MASKED: tl.constexpr):  # fmt: skip
    """The composite (Pc, Dc) with the rows i .. i+7 appended from their v (x), dg re (r) and dg im (j), g
    recomputed from the g before row i (gr, gi) as the forward sweep computes it -> g of row i+7, Pc, Dc re, im."""
    k0, k1, k2, k3, k4, k5, k6, k7 = _masks8(cmask, i, end, MASKED)
    g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i = _cf4(gr, gi, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2, MASKED)
    g4r, g4i, g5r, g5i, g6r, g6i, g7r, g7i = _cf4(g3r, g3i, x4, x5, x6, x7, k4, k5, k6, k7, ar0, ai, b2, MASKED)
    pcr, pci, dcr, dci = _adj_compose4(g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, r0, j0, r1, j1, r2, j2, r3, j3, k0, k1,
                                       k2, k3, b2, pcr, pci, dcr, dci, MASKED)  # fmt: skip
    pcr, pci, dcr, dci = _adj_compose4(g4r, g4i, g5r, g5i, g6r, g6i, g7r, g7i, r4, j4, r5, j5, r6, j6, r7, j7, k4, k5,
                                       k6, k7, b2, pcr, pci, dcr, dci, MASKED)  # fmt: skip
    return g7r, g7i, pcr, pci, dcr, dci


@triton.jit
def _adj_segment_prefetched(V, DGR, DGI, cols, start, end, cmask, ar0, ai, b2, gr, gi, N, C, REVERSE: tl.constexpr,
                            BLOCK_C: tl.constexpr):  # fmt: skip
    """As _adj_segment, with g recomputed from the potentials at V and the carry (gr, gi) entering the segment as the
    forward sweep computes it (12 bytes an element read where g and dg take 16), 8 rows a loop step, each step
    loading the next step's rows (_adj_rows8) before its own arithmetic, so that they are in flight while it
    runs."""
    pcr = tl.full([BLOCK_C], 1.0, tl.float32)
    pci = tl.zeros([BLOCK_C], tl.float32)
    dcr = tl.zeros([BLOCK_C], tl.float32)
    dci = tl.zeros([BLOCK_C], tl.float32)
    x0, x1, x2, x3, x4, x5, x6, x7, r0, r1, r2, r3, r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7 = _adj_rows8(
        V, DGR, DGI, cols, start, end, cmask, N, C, REVERSE
    )
    bulk = (end - start) // 8 * 8
    for j in range(0, bulk, 8):
        y0, y1, y2, y3, y4, y5, y6, y7, s0, s1, s2, s3, s4, s5, s6, s7, t0, t1, t2, t3, t4, t5, t6, t7 = _adj_rows8(
            V, DGR, DGI, cols, start + j + 8, end, cmask, N, C, REVERSE
        )
        gr, gi, pcr, pci, dcr, dci = _adj_compose8(
            start + j, end, cmask, ar0, ai, b2, gr, gi, pcr, pci, dcr, dci, x0, x1, x2, x3, x4, x5, x6, x7, r0, r1,
            r2, r3, r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7, False,
        )  # fmt: skip
        x0, x1, x2, x3, x4, x5, x6, x7 = y0, y1, y2, y3, y4, y5, y6, y7
        r0, r1, r2, r3, r4, r5, r6, r7 = s0, s1, s2, s3, s4, s5, s6, s7
        j0, j1, j2, j3, j4, j5, j6, j7 = t0, t1, t2, t3, t4, t5, t6, t7
    for j in range(bulk, end - start, 8):  # the rows past the last multiple of 8, already loaded
        gr, gi, pcr, pci, dcr, dci = _adj_compose8(
            start + j, end, cmask, ar0, ai, b2, gr, gi, pcr, pci, dcr, dci, x0, x1, x2, x3, x4, x5, x6, x7, r0, r1,
            r2, r3, r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7, True,
        )  # fmt: skip
    return pcr, pci, dcr, dci


@triton.jit
def _adj_seg_kernel(V, H0, BETA, ZRE, ZIM, W, DGR, DGI, AM, FLAG, N, C, L, S, n_cblk, REVERSE: tl.constexpr,
                    BLOCK_C: tl.constexpr, GATED: tl.constexpr):  # fmt: skip
    """AM (B, S, 4, C): composite (Cc, Dc) of segment s >= 1 (program axis 1 = s - 1): mu_first = Cc mu_next + Dc,
    with g recomputed from V and the forward's carry W (B, S, 2, C) into the segment (reads 12 bytes an element
    where g and dg take 16). GATED: as _seg_map's."""
    if GATED:
        if _flag_unset(FLAG, tl.program_id(0)):
            return
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    s += 1
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    start = s * L
    bn = b.to(tl.int64) * N * C
    gr, gi = _segment_value(W, b, s, S, C, cols, cmask)
    pcr, pci, dcr, dci = _adj_segment_prefetched(
        V + bn, DGR + bn, DGI + bn, cols, start, tl.minimum(start + L, N), cmask, ar0, ai, b2, gr, gi, N, C, REVERSE,
        BLOCK_C,
    )  # fmt: skip
    out = AM + (b.to(tl.int64) * S + s) * 4 * C + cols
    tl.store(out, pcr, mask=cmask)
    tl.store(out + C, pci, mask=cmask)
    tl.store(out + 2 * C, dcr, mask=cmask)
    tl.store(out + 3 * C, dci, mask=cmask)


@triton.jit
def _adj_carry_kernel(AM, MU, FLAG, C, S, n_cblk, n_flag, per_flag, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
                      GATED: tl.constexpr):  # fmt: skip
    """MU (B, S, 2, C): mu entering segment s from the right (mu at the first index of segment s+1). GATED: as
    _seg_carry's."""
    pid = tl.program_id(0)
    if GATED:
        if _flag_unset(FLAG, (pid // n_cblk) * n_flag + (pid % n_cblk) // per_flag):
            return
    b = pid // n_cblk
    cols = (pid % n_cblk) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    r = tl.arange(0, BLOCK_S)  # mirrored order: r = 0 <-> segment S-1
    seg = S - r  # composite of segment S - r feeds the carry of segment S-1-r
    m = ((r >= 1) & (r < S))[:, None] & cmask[None, :]
    src = AM + (b.to(tl.int64) * S + seg)[:, None] * 4 * C + cols[None, :]
    cr = tl.load(src, mask=m, other=1.0)
    ci = tl.load(src + C, mask=m, other=0.0)
    dr = tl.load(src + 2 * C, mask=m, other=0.0)
    di = tl.load(src + 3 * C, mask=m, other=0.0)
    _, _, xr, xi = tl.associative_scan((cr, ci, dr, di), axis=0, combine_fn=_affine_combine)
    dst = MU + (b.to(tl.int64) * S + (S - 1 - r))[:, None] * 2 * C + cols[None, :]
    sm = (r < S)[:, None] & cmask[None, :]
    tl.store(dst, xr, mask=sm)
    tl.store(dst + C, xi, mask=sm)


@triton.jit
def _adj_quad(DV, gr0, gi0, gr1, gi1, gr2, gi2, gr3, gi3, br0, bi0, br1, bi1, br2, bi2, br3, bi3, k0, k1, k2, k3,
              o0, o1, o2, o3, mr, mi, b2, acc_r, acc_i, acc_b, MASKED: tl.constexpr):  # fmt: skip
    """mu over a 4-row step's rows 3, 2, 1, 0 (right to left) from their g and dg, DV written -> mu of row 0 and
    the sums."""
    mr, mi, acc_r, acc_i, acc_b, dv3 = _adj_step(gr3, gi3, br3, bi3, k3, mr, mi, b2, acc_r, acc_i, acc_b, MASKED)
    mr, mi, acc_r, acc_i, acc_b, dv2 = _adj_step(gr2, gi2, br2, bi2, k2, mr, mi, b2, acc_r, acc_i, acc_b, MASKED)
    mr, mi, acc_r, acc_i, acc_b, dv1 = _adj_step(gr1, gi1, br1, bi1, k1, mr, mi, b2, acc_r, acc_i, acc_b, MASKED)
    mr, mi, acc_r, acc_i, acc_b, dv0 = _adj_step(gr0, gi0, br0, bi0, k0, mr, mi, b2, acc_r, acc_i, acc_b, MASKED)
    tl.store(DV + o0, dv0, mask=k0)
    tl.store(DV + o1, dv1, mask=k1)
    tl.store(DV + o2, dv2, mask=k2)
    tl.store(DV + o3, dv3, mask=k3)
    return mr, mi, acc_r, acc_i, acc_b


@triton.jit
def _adj_sweep_step(GR, GI, DGR, DGI, DV, cols, i, end, cmask, mr, mi, b2, acc_r, acc_i, acc_b, N, C,
                    REVERSE: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """mu over the rows i+3 .. i (right to left; g and dg loaded first, the highest row first), DV written -> mu of
    row i and the sums."""
    k0, k1, k2, k3, o0, o1, o2, o3 = _quad(i, end, cmask, N, C, REVERSE, cols, MASKED)
    gr3, gi3, br3, bi3 = _adj_row(GR, GI, DGR, DGI, o3, k3)
    gr2, gi2, br2, bi2 = _adj_row(GR, GI, DGR, DGI, o2, k2)
    gr1, gi1, br1, bi1 = _adj_row(GR, GI, DGR, DGI, o1, k1)
    gr0, gi0, br0, bi0 = _adj_row(GR, GI, DGR, DGI, o0, k0)
    return _adj_quad(DV, gr0, gi0, gr1, gi1, gr2, gi2, gr3, gi3, br0, bi0, br1, bi1, br2, bi2, br3, bi3,
                     k0, k1, k2, k3, o0, o1, o2, o3, mr, mi, b2, acc_r, acc_i, acc_b, MASKED)  # fmt: skip


@triton.jit
def _adj_sweep_rows(
    GR, GI, DGR, DGI, DV, cols, mr, mi, start, end, cmask, b2, N, C, REVERSE: tl.constexpr, BLOCK_C: tl.constexpr
):
    """mu over the logical rows end-1 .. start of the batch rows GR, GI, DGR, DGI, DV (at cols + row C) from mu
    entering on the right (mr, mi), 4 rows a step (loads first): first, with row masks, the rows past the last
    multiple of 4 (if any), then the rest without; writes DV = -Re mu -> the rows' sums of Re mu, Im mu and
    Re(conj(g_{i-1}) mu_i), (BLOCK_C,) each."""
    acc_r = tl.zeros([BLOCK_C], tl.float32)
    acc_i = tl.zeros([BLOCK_C], tl.float32)
    acc_b = tl.zeros([BLOCK_C], tl.float32)
    bulk = (end - start) // 4 * 4
    for j in range(bulk, end - start, 4):
        mr, mi, acc_r, acc_i, acc_b = _adj_sweep_step(
            GR, GI, DGR, DGI, DV, cols, start + j, end, cmask, mr, mi, b2, acc_r, acc_i, acc_b, N, C, REVERSE, True
        )
    for j in range(0, bulk, 4):  # right to left: rows i .. i + 3, the highest first
        mr, mi, acc_r, acc_i, acc_b = _adj_sweep_step(
            GR, GI, DGR, DGI, DV, cols, start + bulk - 4 - j, end, cmask, mr, mi, b2, acc_r, acc_i, acc_b, N, C,
            REVERSE, False,
        )  # fmt: skip
    return acc_r, acc_i, acc_b


@triton.jit
def _adj_resweep_step(V, GR, GI, DGR, DGI, DV, cols, i, start, end, cmask, wr, wi, ar0, ai, b2, mr, mi, acc_r,
                      acc_i, acc_b, N, C, REVERSE: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """mu over the rows i+7 .. i (right to left), their g recomputed from V as the forward sweep computes it
    (_cf_quad), from the g before row i: the carry (wr, wi) at the segment's first row, else g of row i-1 at GR,
    GI; all loads first, DV written -> mu of row i and the sums."""
    ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3 = _quad(i, end, cmask, N, C, REVERSE, cols, MASKED)
    kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3 = _quad(i + 4, end, cmask, N, C, REVERSE, cols, MASKED)
    kp = _vmask(cmask, start, i)  # a stored g before row i: not at the segment's first row
    op = cols + _row(i - 1, N, REVERSE) * C
    pr = tl.where(kp, tl.load(GR + op, mask=kp, other=0.0), wr)
    pi = tl.where(kp, tl.load(GI + op, mask=kp, other=0.0), wi)
    ra0, ra1, ra2, ra3 = _load4(DGR, ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3)
    ia0, ia1, ia2, ia3 = _load4(DGI, ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3)
    rb0, rb1, rb2, rb3 = _load4(DGR, kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3)
    ib0, ib1, ib2, ib3 = _load4(DGI, kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3)
    ga0r, ga0i, ga1r, ga1i, ga2r, ga2i, ga3r, ga3i = _cf_quad(
        V, pr, pi, ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3, ar0, ai, b2, MASKED
    )
    gb0r, gb0i, gb1r, gb1i, gb2r, gb2i, gb3r, gb3i = _cf_quad(
        V, ga3r, ga3i, kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3, ar0, ai, b2, MASKED
    )
    mr, mi, acc_r, acc_i, acc_b = _adj_quad(
        DV, gb0r, gb0i, gb1r, gb1i, gb2r, gb2i, gb3r, gb3i, rb0, ib0, rb1, ib1, rb2, ib2, rb3, ib3,
        kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3, mr, mi, b2, acc_r, acc_i, acc_b, MASKED,
    )  # fmt: skip
    return _adj_quad(
        DV, ga0r, ga0i, ga1r, ga1i, ga2r, ga2i, ga3r, ga3i, ra0, ia0, ra1, ia1, ra2, ia2, ra3, ia3,
        ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3, mr, mi, b2, acc_r, acc_i, acc_b, MASKED,
    )  # fmt: skip


@triton.jit
def _adj_resweep_rows(V, GR, GI, DGR, DGI, DV, cols, mr, mi, wr, wi, start, end, cmask, ar0, ai, b2, N, C,
                      REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """As _adj_sweep_rows, 8 rows a step, with g recomputed from the potentials at V (_adj_resweep_step): per 8
    rows it reads one stored row of g, 1 byte an element where loading g takes 8."""
    acc_r = tl.zeros([BLOCK_C], tl.float32)
    acc_i = tl.zeros([BLOCK_C], tl.float32)
    acc_b = tl.zeros([BLOCK_C], tl.float32)
    bulk = (end - start) // 8 * 8
    for j in range(bulk, end - start, 8):
        mr, mi, acc_r, acc_i, acc_b = _adj_resweep_step(
            V, GR, GI, DGR, DGI, DV, cols, start + j, start, end, cmask, wr, wi, ar0, ai, b2, mr, mi, acc_r, acc_i,
            acc_b, N, C, REVERSE, True,
        )  # fmt: skip
    for j in range(0, bulk, 8):  # right to left: rows i .. i + 7, the highest first
        mr, mi, acc_r, acc_i, acc_b = _adj_resweep_step(
            V, GR, GI, DGR, DGI, DV, cols, start + bulk - 8 - j, start, end, cmask, wr, wi, ar0, ai, b2, mr, mi,
            acc_r, acc_i, acc_b, N, C, REVERSE, False,
        )  # fmt: skip
    return acc_r, acc_i, acc_b


@triton.jit
def _store_param_grads(RED, b, s, S, C, cols, cmask, n_cblk, beta, acc_r, acc_i, acc_b):
    """Segment s of batch row b: its rows' sums of Re mu, Im mu and Re(conj(g_{i-1}) mu_i) -> its share of the
    gradients of h0, beta, z_re, z_im (a = h0 + v - z, b2 = beta^2: dL/dh0 = -sum Re mu, dL/dz = sum mu, dL/dbeta
    = 2 beta sum Re(conj(g_{i-1}) mu_i)), stored in RED (4, C, B S) at column b S + s: each gradient's shares of a
    channel lie contiguous, so the launcher's reduction runs along the last dimension (grid (B n_cblk, ...))."""
    segs = (tl.num_programs(0) // n_cblk) * S
    red = RED + cols.to(tl.int64) * segs + b * S + s
    tl.store(red, -acc_r, mask=cmask)
    tl.store(red + C * segs, 2.0 * beta * acc_b, mask=cmask)
    tl.store(red + 2 * C * segs, acc_r, mask=cmask)
    tl.store(red + 3 * C * segs, acc_i, mask=cmask)


@triton.jit
def _adj_sweep_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, DGR, DGI, MU, DV, RED, FLAG, N, C, L, S, n_cblk,
                      REVERSE: tl.constexpr, BLOCK_C: tl.constexpr, GATED: tl.constexpr):  # fmt: skip
    """DV (B, N, C) = -Re mu, with g recomputed from V, the forward's carry W (B, S, 2, C) and every 8th row of g
    (GR, GI); RED (4, C, B S): each segment's share of the gradients of h0, beta, z_re, z_im
    (_store_param_grads). GATED: as _seg_map's."""
    if GATED:
        if _flag_unset(FLAG, tl.program_id(0)):
            return
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    beta = tl.load(BETA + cols, mask=cmask, other=0.0)
    mr, mi = _segment_value(MU, b, s, S, C, cols, cmask)
    wr, wi = _segment_value(W, b, s, S, C, cols, cmask)
    start = s * L
    bn = b.to(tl.int64) * N * C
    acc_r, acc_i, acc_b = _adj_resweep_rows(
        V + bn, GR + bn, GI + bn, DGR + bn, DGI + bn, DV + bn, cols, mr, mi, wr, wi, start, tl.minimum(start + L, N),
        cmask, ar0, ai, b2, N, C, REVERSE, BLOCK_C,
    )  # fmt: skip
    _store_param_grads(RED, b, s, S, C, cols, cmask, n_cblk, beta, acc_r, acc_i, acc_b)


# ----------------------------------------------------------------------------------------------- halo kernels
@triton.jit
def _pow2_rescale(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum):
    """P divided by 2^e, e the exponent of its largest entry (exact) -> P, esum + e."""
    m = _max8(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i)
    e = ((m.to(tl.int32, bitcast=True) >> 23) & 255) - 127
    sc = ((127 - e) << 23).to(tl.float32, bitcast=True)
    return (
        p00r * sc,
        p00i * sc,
        p01r * sc,
        p01i * sc,
        p10r * sc,
        p10i * sc,
        p11r * sc,
        p11i * sc,
        esum + e.to(tl.float32),
    )


@triton.jit
def _rmat_step(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x, valid, ar0, ai, b2):
    """P <- P M with M = [[0, 1], [-b2, a]], a = ar0 + x - i*ai (a row prepended); P unchanged where not valid."""
    ar = ar0 + x
    n01r = p00r + ar * p01r + ai * p01i
    n01i = p00i + ar * p01i - ai * p01r
    n11r = p10r + ar * p11r + ai * p11i
    n11i = p10i + ar * p11i - ai * p11r
    return (
        tl.where(valid, -b2 * p01r, p00r),
        tl.where(valid, -b2 * p01i, p00i),
        tl.where(valid, n01r, p01r),
        tl.where(valid, n01i, p01i),
        tl.where(valid, -b2 * p11r, p10r),
        tl.where(valid, -b2 * p11i, p10i),
        tl.where(valid, n11r, p11r),
        tl.where(valid, n11i, p11i),
    )


@triton.jit
def _back_row(vb, cols, i, lo, cmask, N, C, REVERSE: tl.constexpr):
    """The potential of logical row i and its mask (cmask where i >= lo)."""
    k = _vmask(cmask, lo - 1, i)  # lo - 1 < i
    return tl.load(vb + cols + _row(i, N, REVERSE) * C, mask=k, other=0.0), k


@triton.jit
def _halo_back_step(vb, cols, j, lo, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum, ar0, ai, b2, N, C,
                    REVERSE: tl.constexpr):  # fmt: skip
    """P <- P M_{j-1} M_{j-2} ... M_{j-8} over the rows at or above lo (loads first), rescaled by powers of two every
    4 rows -> P, esum."""
    x0, k0 = _back_row(vb, cols, j - 1, lo, cmask, N, C, REVERSE)
    x1, k1 = _back_row(vb, cols, j - 2, lo, cmask, N, C, REVERSE)
    x2, k2 = _back_row(vb, cols, j - 3, lo, cmask, N, C, REVERSE)
    x3, k3 = _back_row(vb, cols, j - 4, lo, cmask, N, C, REVERSE)
    x4, k4 = _back_row(vb, cols, j - 5, lo, cmask, N, C, REVERSE)
    x5, k5 = _back_row(vb, cols, j - 6, lo, cmask, N, C, REVERSE)
    x6, k6 = _back_row(vb, cols, j - 7, lo, cmask, N, C, REVERSE)
    x7, k7 = _back_row(vb, cols, j - 8, lo, cmask, N, C, REVERSE)
    p = _rmat_step(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, k0, ar0, ai, b2)
    p = _rmat_step(*p, x1, k1, ar0, ai, b2)
    p = _rmat_step(*p, x2, k2, ar0, ai, b2)
    p = _rmat_step(*p, x3, k3, ar0, ai, b2)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum = _pow2_rescale(*p, esum)
    p = _rmat_step(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x4, k4, ar0, ai, b2)
    p = _rmat_step(*p, x5, k5, ar0, ai, b2)
    p = _rmat_step(*p, x6, k6, ar0, ai, b2)
    p = _rmat_step(*p, x7, k7, ar0, ai, b2)
    return _pow2_rescale(*p, esum)


@triton.jit
def _carry_guard(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum, nrows, b2):
    """The carry P(0) = p01 / p11 of a halo's product P (nrows rows, rescaled by 2^-esum) and log2 of the radius of
    the disk P maps the upper half-plane onto (where every carry the earlier rows could hand in lands), |det P| /
    (2 |Im(p10 conj(p11))|) with det P = b2^nrows 2^(-2 esum), over |P(0)| -> gr, gi, that log2."""
    inv = 1.0 / (p11r * p11r + p11i * p11i)
    gr = (p01r * p11r + p01i * p11i) * inv
    gi = (p01i * p11r - p01r * p11i) * inv
    log2_det = nrows.to(tl.float32) * tl.log2(b2) - 2.0 * esum
    log2_r = log2_det - 1.0 - tl.log2(tl.abs(p10i * p11r - p10r * p11i))
    return gr, gi, log2_r - 0.5 * tl.log2(gr * gr + gi * gi)


@triton.jit
def _halo_sweep_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, FLAG, N, C, L, S, n_cblk, MAX_HALO, LOG2_TOL,
                       REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """GR, GI (B, N, C) and W (B, S, 2, C) as _sweep_kernel's, each segment's carry from a halo: the product P of
    the rows before it, grown 8 rows at a time right to left until every channel's disk (_carry_guard) is within
    2^LOG2_TOL |P(0)|, the sequence's start is reached (exact) or MAX_HALO rows are taken; FLAG (B n_cblk,) set
    where a channel's guard still fails (_raise_flag)."""
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    bn = b.to(tl.int64) * N * C
    start = s * L
    lo = tl.maximum(start - MAX_HALO, 0)
    one = tl.full([BLOCK_C], 1.0, tl.float32)
    zero = tl.zeros([BLOCK_C], tl.float32)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum = one, zero, zero, zero, zero, zero, one, zero, zero
    gr, gi = zero, zero  # the first segment's carry
    bad = cmask & (cols < 0)
    j = start
    grow = start > 0
    while grow:
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum = _halo_back_step(
            V + bn, cols, j, lo, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum, ar0, ai, b2, N, C,
            REVERSE,
        )  # fmt: skip
        j -= 8
        gr, gi, excess = _carry_guard(
            p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum, start - tl.maximum(j, lo), b2
        )
        bad = cmask & (j > 0) & (excess > LOG2_TOL)
        grow = (tl.max(bad.to(tl.int32), 0) > 0) & (j > lo)
    out = W + (b.to(tl.int64) * S + s) * 2 * C + cols
    tl.store(out, gr, mask=cmask)
    tl.store(out + C, gi, mask=cmask)
    _raise_flag(FLAG, bad)
    end = tl.minimum(start + L, N)
    _sweep_rows_prefetched(V + bn, GR + bn, GI + bn, cols, gr, gi, start, end, cmask, ar0, ai, b2, N, C, REVERSE)


@triton.jit
def _halo_adj_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, DGR, DGI, DV, RED, FLAG, N, C, L, S, n_cblk, MAX_HALO, TOL2,
                     REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """DV (B, N, C) and RED (4, C, B S) as _adj_sweep_kernel's, mu entering each segment from a halo: the first
    pass's composite (Cc, Dc) over the rows after it (g recomputed from the next segment's carry), grown 8 rows at a
    time until every channel's |Cc|^2 <= TOL2 (mu entering is Dc, off by Cc mu at the halo's end), the sequence's
    end is reached (exact) or MAX_HALO rows are taken; FLAG (B n_cblk,) set where |Cc|^2 still exceeds TOL2."""
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    beta = tl.load(BETA + cols, mask=cmask, other=0.0)
    bn = b.to(tl.int64) * N * C
    start = s * L
    end = tl.minimum(start + L, N)
    lim = tl.minimum(end + MAX_HALO, N)
    gr, gi = _segment_value(W, b, tl.minimum(s + 1, S - 1), S, C, cols, cmask)  # g entering the next segment
    pcr = tl.full([BLOCK_C], 1.0, tl.float32)
    pci = tl.zeros([BLOCK_C], tl.float32)
    dcr = tl.zeros([BLOCK_C], tl.float32)
    dci = tl.zeros([BLOCK_C], tl.float32)
    bad = cmask & (cols < 0)
    i = end
    grow = end < N
    while grow:
        x0, x1, x2, x3, x4, x5, x6, x7, r0, r1, r2, r3, r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7 = _adj_rows8(
            V + bn, DGR + bn, DGI + bn, cols, i, lim, cmask, N, C, REVERSE
        )
        gr, gi, pcr, pci, dcr, dci = _adj_compose8(
            i, lim, cmask, ar0, ai, b2, gr, gi, pcr, pci, dcr, dci, x0, x1, x2, x3, x4, x5, x6, x7, r0, r1, r2, r3,
            r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7, True,
        )  # fmt: skip
        i += 8
        bad = cmask & (i < N) & (pcr * pcr + pci * pci > TOL2)
        grow = (tl.max(bad.to(tl.int32), 0) > 0) & (i < lim)
    _raise_flag(FLAG, bad)
    wr, wi = _segment_value(W, b, s, S, C, cols, cmask)
    acc_r, acc_i, acc_b = _adj_resweep_rows(
        V + bn, GR + bn, GI + bn, DGR + bn, DGI + bn, DV + bn, cols, dcr, dci, wr, wi, start, end, cmask, ar0, ai, b2,
        N, C, REVERSE, BLOCK_C,
    )  # fmt: skip
    _store_param_grads(RED, b, s, S, C, cols, cmask, n_cblk, beta, acc_r, acc_i, acc_b)


# ----------------------------------------------------------------------------------------------- launchers
def _check_rows(N: int, C: int) -> None:
    """The kernels address a batch row's elements by int32 offsets (row * C + channel)."""
    if N * C >= 2**31:
        raise ValueError(f"bk_core_triton: N * C = {N * C} elements a batch row; at most 2^31 - 1 (int32 offsets)")


def _plan(B: int, N: int, C: int, chunk: int | None):
    """Channel block, segment length L (multiple of UNROLL) and count S."""
    _check_rows(N, C)
    block_c = min(64, max(16, next_power_of_2(C)))
    n_cblk = cdiv(C, block_c)
    if chunk is None:
        # segments for ~128K threads in all: at (16, 16384, 64) segments of 128 rows (128K threads) ran fwd+bwd in
        # 0.335 ms on an H100, 64 (256K) in 0.344, 256 (64K) in 0.416 (runs 22g-h of results/kernels/runs.md);
        # shapes with few channels keep the floor of 32 rows, the fastest there or within 7 %
        target = max(1, (1 << 17) // (B * n_cblk * block_c))
        chunk = max(32, cdiv(cdiv(N, target), UNROLL) * UNROLL)
        chunk = max(chunk, cdiv(cdiv(N, 1024), UNROLL) * UNROLL)
    elif chunk <= 0 or chunk % UNROLL:
        raise ValueError(f"bk_core_triton: chunk must be a positive multiple of {UNROLL}, got {chunk}")
    S = max(1, cdiv(N, chunk))
    if S > 4096:
        raise ValueError(f"bk_core_triton: chunk {chunk} gives {S} segments for N={N}; at most 4096")
    return block_c, n_cblk, chunk, S


def _carry_blocks(S: int, block_c: int):
    """Segment-scan tile (BLOCK_S, cb): at most 512 elements per 4 warps (on an H100, at 1,024 fwd+bwd took 8-16 %
    longer at the model shapes and 1.2 % at (16, 16384, 64): run 26b of results/kernels/runs.md)."""
    block_s = max(2, next_power_of_2(S))
    cb = max(1, min(block_c, 512 // block_s))
    return block_s, cb, max(4, block_s * cb // 256)


@functools.cache
def _segment_launch(kernel, block_c: int) -> dict:
    """Launch options of a segment kernel (a thread a channel): the adjoint's first pass and its halo kernel run
    register-capped. Cached (a launch's host time counts in eager mode); callers unpack it and must not change
    it."""
    capped = kernel in (_adj_seg_kernel, _halo_adj_kernel)
    return dict(num_warps=max(1, block_c // 32)) | (dict(maxnreg=ADJ_SEG_MAXNREG) if capped else {})


#: the segment kernels of one sweep and its adjoint, in launch order (the carry scans between them aside)
SEGMENT_KERNELS = (_halo_sweep_kernel, _seg_map_kernel, _sweep_kernel, _halo_adj_kernel, _adj_seg_kernel,
                   _adj_sweep_kernel)  # fmt: skip


def _sweep(v, h0, beta, z_re, z_im, reverse: bool, chunk, max_halo: int = MAX_HALO):
    """Causal sweep in one direction. Returns (g_re, g_im) (B, N, C) and the carry into each segment
    (B, S, 2, C), from which the adjoint recomputes g. The halo kernel runs first (_halo_sweep); the two-pass
    kernels then redo, on the device, the batch rows and channel blocks it flagged, or all of them where it did not
    run."""
    B, N, C = v.shape
    plan = _plan(B, N, C, chunk)
    w = torch.empty(B, plan[3], 2, C, device=v.device, dtype=torch.float32)
    g_re = torch.empty_like(v)
    g_im = torch.empty_like(v)
    flag = _halo_sweep(v, h0, beta, z_re, z_im, w, g_re, g_im, reverse, plan, max_halo)
    _two_pass_sweep(v, h0, beta, z_re, z_im, w, g_re, g_im, flag, reverse, plan)
    return g_re, g_im, w


def _halo_flags(B: int, n_cblk: int, S: int, max_halo: int, device) -> torch.Tensor | None:
    """A halo kernel's flags (B n_cblk,) int32, zeroed; None where no halo runs (one segment, or max_halo 0)."""
    if max_halo < 0:
        raise ValueError(f"bk_core_triton: max_halo must be >= 0 (0: the two-pass kernels alone), got {max_halo}")
    return torch.zeros(B * n_cblk, device=device, dtype=torch.int32) if S > 1 and max_halo > 0 else None


def _halo_sweep(v, h0, beta, z_re, z_im, w, g_re, g_im, reverse: bool, plan, max_halo: int):
    """The halo kernel's g and carries written to g_re, g_im, w -> its flags, None where it does not run."""
    B, N, C = v.shape
    block_c, n_cblk, L, S = plan
    flag = _halo_flags(B, n_cblk, S, max_halo, v.device)
    if flag is not None:
        launch(_halo_sweep_kernel, (B * n_cblk, S),
            v, h0, beta, z_re, z_im, w, g_re, g_im, flag, N, C, L, S, n_cblk, max_halo, LOG2_TOL, REVERSE=reverse,
            BLOCK_C=block_c, **_segment_launch(_halo_sweep_kernel, block_c),
        )  # fmt: skip
    return flag


def _two_pass_sweep(v, h0, beta, z_re, z_im, w, g_re, g_im, flag, reverse: bool, plan) -> None:
    """The two-pass kernels' carries and g written to w, g_re, g_im: where flag (B n_cblk,) is set, every launch
    returning at once elsewhere; everywhere where flag is None."""
    B, N, C = v.shape
    block_c, n_cblk, L, S = plan
    gated = flag is not None
    flag = flag if gated else w  # not read ungated
    if S > 1:
        pm = torch.empty(B, S, 8, C, device=v.device, dtype=torch.float32)
        launch(_seg_map_kernel, (B * n_cblk, S - 1),
            v, h0, beta, z_re, z_im, pm, flag, N, C, L, S, n_cblk, REVERSE=reverse, BLOCK_C=block_c, GATED=gated,
            **_segment_launch(_seg_map_kernel, block_c),
        )  # fmt: skip
        block_s, cb, cw = _carry_blocks(S, block_c)
        launch(_seg_carry_kernel, (B * cdiv(C, cb),),
            pm, w, flag, C, S, cdiv(C, cb), n_cblk, block_c // cb, BLOCK_S=block_s, BLOCK_C=cb, GATED=gated,
            num_warps=cw,
        )  # fmt: skip
    else:
        w.zero_()
    launch(_sweep_kernel, (B * n_cblk, S),
        v, h0, beta, z_re, z_im, w, g_re, g_im, flag, N, C, L, S, n_cblk, REVERSE=reverse, BLOCK_C=block_c,
        GATED=gated, **_segment_launch(_sweep_kernel, block_c),
    )  # fmt: skip


def _adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, reverse: bool, chunk, max_halo: int = MAX_HALO):
    """Adjoint of one causal sweep (_sweep's inputs, its carry and g). Returns dv = dL/dv (B, N, C) and grads
    (4, C): the gradients of h0, beta, z_re, z_im (one reduction of the kernels' per-segment shares). The halo
    kernel (_halo_adjoint) and the two-pass kernels share the work as in _sweep."""
    B, N, C = g_re.shape
    plan = _plan(B, N, C, chunk)
    dv = torch.empty_like(g_re)
    red = torch.empty(4, C, B * plan[3], device=g_re.device, dtype=torch.float32)
    args = (v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im)
    flag = _halo_adjoint(*args, dv, red, reverse, plan, max_halo)
    _two_pass_adjoint(*args, dv, red, flag, reverse, plan)
    return dv, red.sum(-1)


def _halo_adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, dv, red, reverse: bool, plan,
                  max_halo: int):  # fmt: skip
    """The halo kernel's dv and per-segment gradient shares written to dv, red -> its flags, None where it does
    not run."""
    B, N, C = g_re.shape
    block_c, n_cblk, L, S = plan
    flag = _halo_flags(B, n_cblk, S, max_halo, g_re.device)
    if flag is not None:
        launch(_halo_adj_kernel, (B * n_cblk, S),
            v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, dv, red, flag, N, C, L, S, n_cblk, max_halo,
            TOL_ADJ * TOL_ADJ, REVERSE=reverse, BLOCK_C=block_c, **_segment_launch(_halo_adj_kernel, block_c),
        )  # fmt: skip
    return flag


def _two_pass_adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, dv, red, flag, reverse: bool,
                      plan) -> None:  # fmt: skip
    """The two-pass kernels' dv and gradient shares written to dv, red, gated by flag as in _two_pass_sweep."""
    B, N, C = g_re.shape
    block_c, n_cblk, L, S = plan
    mu = torch.empty(B, S, 2, C, device=g_re.device, dtype=torch.float32)
    gated = flag is not None
    flag = flag if gated else mu  # not read ungated
    if S > 1:
        am = torch.empty(B, S, 4, C, device=g_re.device, dtype=torch.float32)
        launch(_adj_seg_kernel, (B * n_cblk, S - 1),
            v, h0, beta, z_re, z_im, carry, dg_re, dg_im, am, flag, N, C, L, S, n_cblk, REVERSE=reverse,
            BLOCK_C=block_c, GATED=gated, **_segment_launch(_adj_seg_kernel, block_c),
        )  # fmt: skip
        block_s, cb, cw = _carry_blocks(S, block_c)
        launch(_adj_carry_kernel, (B * cdiv(C, cb),),
            am, mu, flag, C, S, cdiv(C, cb), n_cblk, block_c // cb, BLOCK_S=block_s, BLOCK_C=cb, GATED=gated,
            num_warps=cw,
        )  # fmt: skip
    else:
        mu.zero_()
    launch(_adj_sweep_kernel, (B * n_cblk, S),
        v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, mu, dv, red, flag, N, C, L, S, n_cblk,
        REVERSE=reverse, BLOCK_C=block_c, GATED=gated, **_segment_launch(_adj_sweep_kernel, block_c),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------- custom ops
@torch.library.custom_op("phasebench::bk_core_fwd", mutates_args=())
def bk_core_fwd(
    v: torch.Tensor,
    h0: torch.Tensor,
    beta: torch.Tensor,
    z_re: torch.Tensor,
    z_im: torch.Tensor,
    reverse: bool,
    chunk: int | None,
    max_halo: int = MAX_HALO,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One causal sweep: v (B, N, C), h0, beta, z_re, z_im (C,), float32 contiguous -> (g_re, g_im) (B, N, C) and
    the carry into each of its S segments, (B, S, 2, C) (for bk_core_bwd; not differentiable). max_halo: the
    halos' rows at most (0: the two-pass kernels alone)."""
    return _sweep(v, h0, beta, z_re, z_im, reverse, chunk, max_halo)


@torch.library.custom_op("phasebench::bk_core_bwd", mutates_args=())
def bk_core_bwd(
    v: torch.Tensor,
    h0: torch.Tensor,
    beta: torch.Tensor,
    z_re: torch.Tensor,
    z_im: torch.Tensor,
    carry: torch.Tensor,
    g_re: torch.Tensor,
    g_im: torch.Tensor,
    dg_re: torch.Tensor,
    dg_im: torch.Tensor,
    reverse: bool,
    chunk: int | None,
    max_halo: int = MAX_HALO,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjoint of bk_core_fwd: its inputs, carry and g, and dg (B, N, C) -> dv (B, N, C), grads (4, C) of h0, beta,
    z_re, z_im."""
    return _adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, reverse, chunk, max_halo)


@bk_core_fwd.register_fake
def _bk_core_fwd_fake(v, h0, beta, z_re, z_im, reverse, chunk, max_halo=MAX_HALO):
    B, N, C = v.shape
    S = _plan(B, N, C, chunk)[3]
    return torch.empty_like(v), torch.empty_like(v), v.new_empty(B, S, 2, C)


@bk_core_bwd.register_fake
def _bk_core_bwd_fake(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, reverse, chunk, max_halo=MAX_HALO):
    return torch.empty_like(g_re), g_re.new_empty(4, g_re.shape[2])


def _bk_core_fwd_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:5], *output)
    ctx.mark_non_differentiable(output[2])
    ctx.set_materialize_grads(False)  # no zeros written for the carry's gradient
    ctx.args = inputs[5:]  # reverse, chunk and max_halo, for bk_core_bwd


def _bk_core_fwd_backward(ctx, bwd, dg_re, dg_im, _dcarry):
    v, h0, beta, z_re, z_im, g_re, g_im, carry = ctx.saved_tensors
    dg_re, dg_im = (torch.zeros_like(g_re) if d is None else d.float().contiguous() for d in (dg_re, dg_im))
    dv, grads = bwd(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, *ctx.args)
    return dv, *grads.unbind(), *(None,) * len(ctx.args)


_bk_core_sweep = differentiable_op(bk_core_fwd, bk_core_bwd, _bk_core_fwd_setup_context, _bk_core_fwd_backward)


# ----------------------------------------------------------------------------------------------- public
def _shift(x: torch.Tensor, by: int) -> torch.Tensor:
    """y_t = x_{t-by} along dim 1 (by = +1: previous, -1: next), zero outside."""
    zero = torch.zeros_like(x[:, :1])
    return torch.cat([zero, x[:, :-1]], 1) if by == 1 else torch.cat([x[:, 1:], zero], 1)


def bk_core_triton(v, h0, beta, z_re, z_im, causal: bool = True, chunk: int | None = None, max_halo: int = MAX_HALO):
    """Triton BK-Core. v (B, N, C); h0, beta, z_re, z_im (C,) -> (g_re, g_im) float32 (B, N, C).

    chunk: segment length (positive multiple of 4; None picks one from the shape). max_halo: the halo kernels'
    rows at most (0: the two-pass kernels alone, as where a halo falls short).
    Bidirectional: G = 1/(a - b2 gL_{i-1} - b2 gR_{i+1}) from the two sweeps, differentiated by torch.
    """
    v = v.float().contiguous()
    h0, beta, z_re, z_im = (p.float().contiguous() for p in (h0, beta, z_re, z_im))
    gl = _bk_core_sweep(v, h0, beta, z_re, z_im, False, chunk, max_halo)[:2]
    if causal:
        return gl
    gr = _bk_core_sweep(v, h0, beta, z_re, z_im, True, chunk, max_halo)[:2]
    return _bidirectional(v, h0, beta, z_re, z_im, gl, gr)


def _bidirectional(v, h0, beta, z_re, z_im, gl, gr):
    """G = 1/(a - b2 gL_{i-1} - b2 gR_{i+1}) from the sweeps gl, gr ((re, im) pairs, (B, N, C)), in torch."""
    a = torch.complex(v + (h0 - z_re), (-z_im).expand_as(v))
    nb = _shift(torch.complex(*gl), 1) + _shift(torch.complex(*gr), -1)
    g = 1.0 / (a - (beta * beta) * nb)  # autograd keeps nb and g for the backward
    return g.real.contiguous(), g.imag.contiguous()


__all__ = ["bk_core_triton", "bk_core_fwd", "bk_core_bwd"]
