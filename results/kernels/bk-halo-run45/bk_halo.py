"""Run 45 (prepared in the thirty-fifth session): BK-Core with a halo in place of the carry scans.

The landed kernels (kernels/bk_core/triton.py) find each segment's carry by a pass over every segment and a scan
over segments, each way: 45 bytes an element in six launches. The resolvent forgets its boundary: two forward
trajectories from different carries draw together by b2 |g_i| |g'_i| a row, and the adjoint's carry fades by
|c_i| = b2 |g_i|^2 a row. So here each segment starts HALO rows early and keeps only its own rows:

  forward  `_halo_sweep_kernel`: the Mobius product P of the HALO rows before the segment (rescaled by exact powers
           of two, whose exponents it sums), the carry P(0), then the landed sweep of the segment's rows
           (4 (1 + HALO / L) + 8 bytes an element). Every carry the rows before the halo could hand in lies in
           the closed upper half-plane, which P maps onto a disk of radius |det P| / (2 |Im(p10 conj(p11))|),
           det P = b2^HALO 2^(-2 sum of exponents); P(0) lies in it. The segment is flagged where that radius
           exceeds TOL |P(0)|; it also stores P(0) as the landed forward stores its carries.
  backward `_halo_adj_kernel`: the landed first adjoint pass's composite (Cc, Dc) over the HALO rows after the
           segment (g recomputed from the next segment's carry), mu entering the segment = Dc (Cc 0 + Dc), then
           the landed adjoint sweep (17 + 12 HALO / L bytes an element). mu is off by Cc mu_next; the segment is
           flagged where |Cc| > TOL_ADJ (run 41's criterion: 2^-30 |mu_next|).
A halo that reaches the sequence's end is exact (the carry there is 0) and never flagged. Both directions (REVERSE,
as the landed kernels map it) are checked; `time` runs left to right. Flagged work falls back
to the landed kernels here on the host (`bk_core_halo`, for the checks); a kernel path would keep that on the device.
At the bench's (16, 16384, 64) with L = 128, HALO = 64: 14 + 23 = 37 bytes an element in two launches against the
landed 45 in six; run 41's counts (`bk-fix-run41/fix_rows.txt`) put the adjoint's halo at most 41 rows there,
48-128 at BKCore's initial parameters, unbounded near the spectrum (eta 0.01), where everything falls back.

    python3 bk_halo.py check             # CPU (TRITON_INTERPRET=1) or GPU: against float64 and the landed kernels
    python3 bk_halo.py time OUT.json     # GPU: fwd+bwd from CUDA graphs, landed against halo kernels, flags
"""

from __future__ import annotations

import math
import os
import statistics
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "bk-fix-run41"))
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "bk-tile-run44"))

import bk_fix  # noqa: E402
import bk_tile  # noqa: E402
from kernels.bk_core.naive import bk_core_sequential  # noqa: E402
from kernels.bk_core.triton import (  # noqa: E402
    _adj_compose8,
    _carry_guard,
    _halo_back_step,
    _pow2_rescale,
    _adj_resweep_rows,
    _adj_rows8,
    _adj_segment_prefetched,
    _channel_params,
    _load4,
    _mat_step,
    _plan,
    _program,
    _quad,
    _segment_launch,
    _segment_value,
    _store_param_grads,
    _sweep_rows_prefetched,
)
from kernels.bk_core import triton as bk  # noqa: E402
from kernels.launch import launch  # noqa: E402


def _sweep(*args):
    """The two-pass kernels alone: what this run calls the landed kernels (the halo path has landed since)."""
    return bk._sweep(*args, max_halo=0)


def _adjoint(*args):
    """As _sweep, for the adjoint."""
    return bk._adjoint(*args, max_halo=0)


TOL = 2.0**-24  # the forward's disk radius against |P(0)|
TOL_ADJ = 2.0**-30  # the adjoint's |Cc|, as run 41's threshold


# ----------------------------------------------------------------------------------------------- kernels
# (the halo helpers, _pow2_rescale, _halo_back_step and _carry_guard, landed in kernels/bk_core/triton.py after
# this run, and are imported from there)
@triton.jit
def _halo_step(vb, cols, i, end, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum, ar0, ai, b2, N, C,
               REVERSE: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """P <- M_{i+3} ... M_i P over 4 rows (loads first), rescaled by a power of two -> P, esum."""
    k0, k1, k2, k3, o0, o1, o2, o3 = _quad(i, end, cmask, N, C, REVERSE, cols, MASKED)
    x0, x1, x2, x3 = _load4(vb, k0, k1, k2, k3, o0, o1, o2, o3)
    p = _mat_step(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, k0, ar0, ai, b2, MASKED)
    p = _mat_step(*p, x1, k1, ar0, ai, b2, MASKED)
    p = _mat_step(*p, x2, k2, ar0, ai, b2, MASKED)
    p = _mat_step(*p, x3, k3, ar0, ai, b2, MASKED)
    return _pow2_rescale(*p, esum)


@triton.jit
def _halo_product(vb, cols, start, end, cmask, ar0, ai, b2, N, C, REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):
    """P = M_last ... M_first over the logical rows start .. end-1, 4 rows a step -> P (8), the sum of its rescale
    exponents (BLOCK_C,)."""
    one = tl.full([BLOCK_C], 1.0, tl.float32)
    zero = tl.zeros([BLOCK_C], tl.float32)
    p = one, zero, zero, zero, zero, zero, one, zero, zero
    bulk = (end - start) // 4 * 4
    for j in range(0, bulk, 4):
        p = _halo_step(vb, cols, start + j, end, cmask, *p, ar0, ai, b2, N, C, REVERSE, False)
    for j in range(bulk, end - start, 4):
        p = _halo_step(vb, cols, start + j, end, cmask, *p, ar0, ai, b2, N, C, REVERSE, True)
    return p


@triton.jit
def _halo_sweep_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, FLAG, N, C, L, S, n_cblk, HALO, LOG2_TOL,
                       REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """GR, GI (B, N, C); W (B, S, 2, C): the carry each segment started from; FLAG (B, S, C) int32: 1 where that
    carry's disk of possible values is wider than TOL |carry|."""
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    bn = b.to(tl.int64) * N * C
    start = s * L
    h = tl.maximum(start - HALO, 0)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum = _halo_product(
        V + bn, cols, h, start, cmask, ar0, ai, b2, N, C, REVERSE, BLOCK_C
    )
    gr, gi, excess = _carry_guard(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum, start - h, b2)
    bad = cmask & (h > 0) & (excess > LOG2_TOL)
    out = W + (b.to(tl.int64) * S + s) * 2 * C + cols
    tl.store(out, gr, mask=cmask)
    tl.store(out + C, gi, mask=cmask)
    tl.store(FLAG + (b.to(tl.int64) * S + s) * C + cols, bad.to(tl.int32), mask=cmask)
    end = tl.minimum(start + L, N)
    _sweep_rows_prefetched(V + bn, GR + bn, GI + bn, cols, gr, gi, start, end, cmask, ar0, ai, b2, N, C, REVERSE)


@triton.jit
def _halo_adj_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, DGR, DGI, DV, RED, FLAG, N, C, L, S, n_cblk, HALO, TOL2,
                     REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """DV (B, N, C), RED (4, C, B S) as the landed _adj_sweep_kernel's; FLAG (B, S, C) int32: 1 where the halo's
    |Cc|^2 exceeds TOL2."""
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    beta = tl.load(BETA + cols, mask=cmask, other=0.0)
    bn = b.to(tl.int64) * N * C
    start = s * L
    end = tl.minimum(start + L, N)
    stop = tl.minimum(end + HALO, N)
    nr, ni = _segment_value(W, b, tl.minimum(s + 1, S - 1), S, C, cols, cmask)  # g entering the next segment
    pcr, pci, mr, mi = _adj_segment_prefetched(
        V + bn, DGR + bn, DGI + bn, cols, end, stop, cmask, ar0, ai, b2, nr, ni, N, C, REVERSE, BLOCK_C
    )  # mu entering this segment: Cc 0 + Dc
    bad = cmask & (stop < N) & (pcr * pcr + pci * pci > TOL2)
    tl.store(FLAG + (b.to(tl.int64) * S + s) * C + cols, bad.to(tl.int32), mask=cmask)
    wr, wi = _segment_value(W, b, s, S, C, cols, cmask)
    acc_r, acc_i, acc_b = _adj_resweep_rows(
        V + bn, GR + bn, GI + bn, DGR + bn, DGI + bn, DV + bn, cols, mr, mi, wr, wi, start, end, cmask, ar0, ai, b2,
        N, C, REVERSE, BLOCK_C,
    )  # fmt: skip
    _store_param_grads(RED, b, s, S, C, cols, cmask, n_cblk, beta, acc_r, acc_i, acc_b)


@triton.jit
def _halo_sweep_adaptive_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, FLAG, N, C, L, S, n_cblk, MAXHALO, LOG2_TOL,
                                REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """As _halo_sweep_kernel, the halo grown 8 rows at a time (right to left from the segment) until every channel's
    disk is within TOL |carry|, the sequence's start is reached (exact) or MAXHALO rows are taken (flagged)."""
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    bn = b.to(tl.int64) * N * C
    start = s * L
    lo = tl.maximum(start - MAXHALO, 0)
    one = tl.full([BLOCK_C], 1.0, tl.float32)
    zero = tl.zeros([BLOCK_C], tl.float32)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum = one, zero, zero, zero, zero, zero, one, zero, zero
    gr, gi = zero, zero
    bad = cmask & (cols < 0)
    j = start
    need = start > 0
    while need:
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum = _halo_back_step(
            V + bn, cols, j, lo, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum, ar0, ai, b2, N, C,
            REVERSE,
        )  # fmt: skip
        j -= 8
        gr, gi, excess = _carry_guard(
            p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, esum, start - tl.maximum(j, lo), b2
        )
        bad = cmask & (j > 0) & (excess > LOG2_TOL)
        need = (tl.max(bad.to(tl.int32), 0) > 0) & (j > lo)
    out = W + (b.to(tl.int64) * S + s) * 2 * C + cols
    tl.store(out, gr, mask=cmask)
    tl.store(out + C, gi, mask=cmask)
    tl.store(FLAG + (b.to(tl.int64) * S + s) * C + cols, bad.to(tl.int32), mask=cmask)
    end = tl.minimum(start + L, N)
    _sweep_rows_prefetched(V + bn, GR + bn, GI + bn, cols, gr, gi, start, end, cmask, ar0, ai, b2, N, C, REVERSE)


@triton.jit
def _halo_adj_adaptive_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, DGR, DGI, DV, RED, FLAG, N, C, L, S, n_cblk, MAXHALO,
                              TOL2, REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """As _halo_adj_kernel, the halo grown 8 rows at a time (left to right after the segment) until every channel's
    |Cc|^2 is within TOL2, the sequence's end is reached (exact) or MAXHALO rows are taken (flagged)."""
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    beta = tl.load(BETA + cols, mask=cmask, other=0.0)
    bn = b.to(tl.int64) * N * C
    start = s * L
    end = tl.minimum(start + L, N)
    lim = tl.minimum(end + MAXHALO, N)
    gr, gi = _segment_value(W, b, tl.minimum(s + 1, S - 1), S, C, cols, cmask)  # g entering the next segment
    pcr = tl.full([BLOCK_C], 1.0, tl.float32)
    pci = tl.zeros([BLOCK_C], tl.float32)
    dcr = tl.zeros([BLOCK_C], tl.float32)
    dci = tl.zeros([BLOCK_C], tl.float32)
    bad = cmask & (cols < 0)
    i = end
    need = end < N
    while need:
        x0, x1, x2, x3, x4, x5, x6, x7, r0, r1, r2, r3, r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7 = _adj_rows8(
            V + bn, DGR + bn, DGI + bn, cols, i, lim, cmask, N, C, REVERSE
        )
        gr, gi, pcr, pci, dcr, dci = _adj_compose8(
            i, lim, cmask, ar0, ai, b2, gr, gi, pcr, pci, dcr, dci, x0, x1, x2, x3, x4, x5, x6, x7, r0, r1, r2, r3,
            r4, r5, r6, r7, j0, j1, j2, j3, j4, j5, j6, j7, True,
        )  # fmt: skip
        i += 8
        bad = cmask & (i < N) & (pcr * pcr + pci * pci > TOL2)
        need = (tl.max(bad.to(tl.int32), 0) > 0) & (i < lim)
    tl.store(FLAG + (b.to(tl.int64) * S + s) * C + cols, bad.to(tl.int32), mask=cmask)
    wr, wi = _segment_value(W, b, s, S, C, cols, cmask)
    acc_r, acc_i, acc_b = _adj_resweep_rows(
        V + bn, GR + bn, GI + bn, DGR + bn, DGI + bn, DV + bn, cols, dcr, dci, wr, wi, start, end, cmask, ar0, ai, b2,
        N, C, REVERSE, BLOCK_C,
    )  # fmt: skip
    _store_param_grads(RED, b, s, S, C, cols, cmask, n_cblk, beta, acc_r, acc_i, acc_b)


@triton.jit
def _gate_kernel(FLAG, n_cblk):
    """What a gated landed kernel does where its (batch row, channel block) is not flagged: one load, then return."""
    if tl.load(FLAG + tl.program_id(0) % n_cblk) != 0:
        tl.store(FLAG + tl.program_id(0) % n_cblk, 1)


# ----------------------------------------------------------------------------------------------- launchers
def halo_fwd(v, h0, beta, z_re, z_im, halo, chunk=None, tol=TOL, reverse=False, adaptive=False):
    """One causal sweep -> (g_re, g_im) (B, N, C), the carries (B, S, 2, C) and the flags (B, S, C); `adaptive`: the
    halo grows to at most `halo` rows."""
    B, N, C = v.shape
    block_c, n_cblk, L, S = _plan(B, N, C, chunk)
    w = torch.empty(B, S, 2, C, device=v.device, dtype=torch.float32)
    flag = torch.empty(B, S, C, device=v.device, dtype=torch.int32)
    g_re, g_im = torch.empty_like(v), torch.empty_like(v)
    launch(_halo_sweep_adaptive_kernel if adaptive else _halo_sweep_kernel, (B * n_cblk, S),
        v, h0, beta, z_re, z_im, w, g_re, g_im, flag, N, C, L, S, n_cblk, halo, math.log2(tol), REVERSE=reverse,
        BLOCK_C=block_c, num_warps=max(1, block_c // 32),
    )  # fmt: skip
    return g_re, g_im, w, flag


def halo_adj(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, halo, chunk=None, tol=TOL_ADJ, maxnreg=None,
             reverse=False, adaptive=False):  # fmt: skip
    """Adjoint of halo_fwd (its carries, g) -> dv (B, N, C), grads (4, C) of h0, beta, z_re, z_im, flags (B, S, C).
    `maxnreg`: a register cap (uncapped the kernel takes 80 on sm_90, triton 3.6; the landed passes 64)."""
    B, N, C = g_re.shape
    block_c, n_cblk, L, S = _plan(B, N, C, chunk)
    dv = torch.empty_like(g_re)
    red = torch.empty(4, C, B * S, device=g_re.device, dtype=torch.float32)
    flag = torch.empty(B, S, C, device=g_re.device, dtype=torch.int32)
    kernel = _halo_adj_adaptive_kernel if adaptive else _halo_adj_kernel
    opts = _segment_launch(kernel, block_c) | ({"maxnreg": maxnreg} if maxnreg else {})
    launch(kernel, (B * n_cblk, S),
        v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, dv, red, flag, N, C, L, S, n_cblk, halo, tol * tol,
        REVERSE=reverse, BLOCK_C=block_c, **opts,
    )  # fmt: skip
    return dv, red.sum(-1), flag


class _HaloSweep(torch.autograd.Function):
    """One sweep by the halo kernels, flagged work redone by the landed kernels (a host check); halo None: the
    landed kernels alone."""

    @staticmethod
    def forward(ctx, v, h0, beta, z_re, z_im, halo, chunk, reverse, adaptive):
        flagged = True
        if halo is not None:
            g_re, g_im, w, flag = halo_fwd(v, h0, beta, z_re, z_im, halo, chunk, reverse=reverse, adaptive=adaptive)
            flagged = bool(flag.any())
        if flagged:
            g_re, g_im, w = _sweep(v, h0, beta, z_re, z_im, reverse, chunk)
        ctx.save_for_backward(v, h0, beta, z_re, z_im, w, g_re, g_im)
        ctx.halo, ctx.chunk, ctx.reverse, ctx.adaptive = halo, chunk, reverse, adaptive
        return g_re, g_im

    @staticmethod
    def backward(ctx, dg_re, dg_im):
        v, h0, beta, z_re, z_im, w, g_re, g_im = ctx.saved_tensors
        args = (v, h0, beta, z_re, z_im, w, g_re, g_im, dg_re.contiguous(), dg_im.contiguous())
        flagged = True
        if ctx.halo is not None:
            dv, grads, flag = halo_adj(*args, ctx.halo, ctx.chunk, reverse=ctx.reverse, adaptive=ctx.adaptive)
            flagged = bool(flag.any())
        if flagged:
            dv, grads = _adjoint(*args, ctx.reverse, ctx.chunk)
        return dv, *grads.unbind(), None, None, None, None


def gate_overhead(v, chunk=None):
    """The launches a device-side fallback adds to a fwd+bwd when nothing is flagged: a zeroed flag buffer (B, n_cblk)
    each way and the six landed kernels' grids, each program loading its flag and returning."""
    B, N, C = v.shape
    block_c, n_cblk, L, S = _plan(B, N, C, chunk)
    for _ in range(2):
        flag = torch.zeros(B, n_cblk, device=v.device, dtype=torch.int32)
        for grid in ((B * n_cblk, S - 1), (B * n_cblk,), (B * n_cblk, S)):
            launch(_gate_kernel, grid, flag, n_cblk, num_warps=max(1, block_c // 32))


def bk_core_halo(v, h0, beta, z_re, z_im, halo=64, chunk=None, reverse=False, adaptive=False):
    """One BK-Core sweep (left to right, or right to left with `reverse`): v (B, N, C); h0, beta, z_re, z_im (C,)
    float32 -> (g_re, g_im); halo None: the landed kernels; `adaptive`: halos grown to at most `halo` rows."""
    return _HaloSweep.apply(v, h0, beta, z_re, z_im, halo, chunk, reverse, adaptive)


# ----------------------------------------------------------------------------------------------- checks, timing
def inputs(kind: str, B: int, N: int, C: int, device: str, seed: int = 0):
    """bk-fix-run41/bk_fix.py's inputs, and `spectrum`: no potential, eta 0.01 (the carry never fades)."""
    if kind != "spectrum":
        return bk_fix.inputs(kind, B, N, C, device, seed)
    v, h0, beta, z_re, z_im = (t.detach() for t in bk_fix.inputs("model", B, N, C, device, seed))
    return [t.contiguous().requires_grad_() for t in (v * 0, h0, beta, z_re, torch.full_like(z_im, 0.01))]


def _grads(fn, args, dgr, dgi):
    for t in args:
        t.grad = None
    g_re, g_im = fn(*args)
    torch.autograd.backward((g_re, g_im), (dgr, dgi))
    return [g_re.detach(), g_im.detach()] + [t.grad.clone() for t in args]


def check(device: str) -> None:
    """g and every gradient against float64 autograd of the sequential reference, beside the landed kernels'; the
    flags by input; without the guards (tolerances of 1) g and dv must be off where the halo is far too short."""
    cases = [  # (kind, B, N, C, chunk, halo, the unguarded halo must be off)
        ("bench", 2, 300, 20, 32, 64, False),
        ("bench", 1, 1024, 16, 128, 64, False),
        ("bench", 2, 100, 20, 12, 8, True),  # a halo too short: flagged, the landed kernels take over
        ("model", 1, 1024, 70, 128, 128, False),  # two channel blocks
        ("bench", 1, 37, 5, 8, 16, False),  # odd lengths: the last segment partial, halos past both ends
        ("spectrum", 1, 512, 16, 64, 64, True),  # eta 0.01: flagged
    ]
    for adaptive in (False, True):
        for kind, B, N, C, chunk, halo, must_be_off in cases:
            for reverse in (False, True):
                _check_case(device, kind, B, N, C, chunk, halo, must_be_off, reverse, adaptive)


def _reference(v, h0, beta, z_re, z_im, reverse):
    """The sequential float64 reference of one sweep, right to left by flipping."""
    if not reverse:
        return bk_core_sequential(v, h0, beta, z_re, z_im)
    g_re, g_im = bk_core_sequential(v.flip(1), h0, beta, z_re, z_im)
    return g_re.flip(1), g_im.flip(1)


def _check_case(device, kind, B, N, C, chunk, halo, must_be_off, reverse, adaptive):
    names = ("g_re", "g_im", "v", "h0", "beta", "z_re", "z_im")
    args = inputs(kind, B, N, C, device)
    gen = torch.Generator(device="cpu").manual_seed(1)
    dgr, dgi = (torch.randn(B, N, C, generator=gen).to(device) for _ in range(2))
    a = [t.detach() for t in args]
    with torch.no_grad():
        _, _, w, ffl = halo_fwd(*a, halo, chunk, reverse=reverse, adaptive=adaptive)
        g_re, g_im, w_l = _sweep(*a, reverse, chunk)
        afl = halo_adj(*a, w_l, g_re, g_im, dgr, dgi, halo, chunk, reverse=reverse, adaptive=adaptive)[2]
    flagged = f"flagged: forward {ffl.float().mean().item():.2f}, adjoint {afl.float().mean().item():.2f}"
    landed = _grads(lambda *t: bk_core_halo(*t, halo=None, chunk=chunk, reverse=reverse), args, dgr, dgi)
    halo_g = _grads(lambda *t: bk_core_halo(*t, halo=halo, chunk=chunk, reverse=reverse, adaptive=adaptive), args,
                    dgr, dgi)  # fmt: skip
    a64 = [t.detach().double().requires_grad_() for t in args]
    ref = _grads(lambda *t: _reference(*t, reverse), a64, dgr.double(), dgi.double())
    errs = []
    for name, lt, ht, rt in zip(names, landed, halo_g, ref, strict=True):
        scale = rt.abs().max().item()
        e_land = (lt.double() - rt).abs().max().item() / scale
        e_halo = (ht.double() - rt).abs().max().item() / scale
        errs.append(f"{name} {e_land:.1e}/{e_halo:.1e}")
        assert e_halo <= max(4 * e_land, 1e-6), (kind, B, N, C, chunk, halo, reverse, adaptive, name, e_land, e_halo)
    mode = "adaptive, at most" if adaptive else "fixed"
    print(f"{kind} ({B}, {N}, {C}) chunk {chunk} halo {mode} {halo} reverse {reverse}: {flagged}; max err / max|ref|, "
          "landed/halo: " + ", ".join(errs), flush=True)  # fmt: skip
    if ffl.any():  # the guard is conservative; where the halo is far too short it is what keeps g right
        with torch.no_grad():
            raw = halo_fwd(*a, halo, chunk, tol=1.0, reverse=reverse, adaptive=adaptive)[0]
        err = (raw.double() - ref[0]).abs().max().item() / ref[0].abs().max().item()
        print(f"  unguarded forward: max err / max|ref| {err:.1e}", flush=True)
        assert err > 1e-5 or not must_be_off, err
    if afl.any():  # the same for the adjoint's guard, from the landed carries and g
        with torch.no_grad():
            raw = halo_adj(*a, w_l, g_re, g_im, dgr, dgi, halo, chunk, tol=1.0, reverse=reverse, adaptive=adaptive)[0]
        err = (raw.double() - ref[2]).abs().max().item() / ref[2].abs().max().item()
        print(f"  unguarded adjoint: dv max err / max|ref| {err:.1e}", flush=True)
        assert err > 1e-5 or not must_be_off, err


MAXHALO = 256  # the adaptive halos' cap in `time`


def time_all(out: str, shape=(16, 16384, 64)) -> None:
    """fwd+bwd from CUDA graphs: the landed kernels against the halo kernels, fixed and adaptive (no fallback: flags
    counted apart), at the bench's inputs and BKCore's initial ones, 3 interleaved rounds, median; GB/s by 32 bytes
    an element. `gated` rows add the empty launches a device-side fallback would (gate_overhead)."""
    import triton.testing

    rows = {}
    for kind, halos in (("bench", (32, 48, 64)), ("model", (64, 128))):
        args = [t.detach() for t in inputs(kind, *shape, "cuda")]
        gen = torch.Generator(device="cpu").manual_seed(1)
        dgr, dgi = (torch.randn(*shape, generator=gen).cuda() for _ in range(2))

        def landed(args=args, dgr=dgr, dgi=dgi):
            g_re, g_im, w = _sweep(*args, False, None)
            return _adjoint(*args, w, g_re, g_im, dgr, dgi, False, None)

        def halo_step(halo, adaptive=False, cap=None, gated=False, args=args, dgr=dgr, dgi=dgi):
            g_re, g_im, w, ffl = halo_fwd(*args, halo, None, adaptive=adaptive)
            dv, grads, afl = halo_adj(*args, w, g_re, g_im, dgr, dgi, halo, None, maxnreg=cap, adaptive=adaptive)
            if gated:
                gate_overhead(args[0])
            return dv, ffl, afl

        variants = {f"halo {h}": dict(halo=h) for h in halos}  # name -> halo_step's arguments
        variants[f"halo {halos[-1]} capped"] = dict(halo=halos[-1], cap=64)  # the adjoint at 64 registers
        variants[f"halo {halos[0]} gated"] = dict(halo=halos[0], gated=True)
        variants[f"halo {halos[-1]} gated"] = dict(halo=halos[-1], gated=True)
        variants[f"adaptive {MAXHALO}"] = dict(halo=MAXHALO, adaptive=True)
        variants[f"adaptive {MAXHALO} gated"] = dict(halo=MAXHALO, adaptive=True, gated=True)
        fns = {"landed": landed} | {name: (lambda kw=kw: halo_step(**kw)) for name, kw in variants.items()}
        want = landed()[0]
        for name in list(fns):  # a variant that fails to compile or run is reported and left out
            try:
                fns[name]()
            except Exception as e:  # noqa: BLE001
                print(f"{kind} {name}: failed: {type(e).__name__}: {e}"[:2000], flush=True)
                del fns[name]
        times = {name: [] for name in fns}
        for _ in range(3):
            for name, fn in fns.items():
                times[name].append(triton.testing.do_bench_cudagraph(fn, rep=100))
        mb = 32 * math.prod(shape) / 1e6  # MB at 32 bytes an element; MB per ms is GB/s
        for name, t in times.items():
            med = statistics.median(t)
            out_ = fns[name]()
            diff = ((out_[0] - want).abs().max() / want.abs().max()).item()
            row = dict(ms=med, rounds=t, gbps_by_32=mb / med, dv_rel_diff_vs_landed=diff)
            extra = ""
            if name != "landed":
                row["flagged_fwd"], row["flagged_adj"] = (f.float().mean().item() for f in out_[1:])
                extra = f", flagged fwd {row['flagged_fwd']:.3f} adj {row['flagged_adj']:.3f}"
            rows[f"{kind} {name}"] = row
            print(f"{kind} {name:20s} {med:.4f} ms  {mb / med:6.0f} GB/s by 32 B  dv rel diff {diff:.1e}{extra}",
                  flush=True)  # fmt: skip
    bk_tile.write_rows(out, rows, shape)


if __name__ == "__main__":
    bk_tile.main(sys.argv, "bk_halo.py", check, time_all)
