"""Run 41 (prepared in the thirty-fourth session): BK-Core's adjoint from one full pass and a short fix-up.

The landed adjoint (kernels/bk_core/triton.py) reads every row twice: a first pass composes each segment's affine
map mu_first = Cc mu_next + Dc (v and dg, 12 bytes an element), a scan gives mu entering each segment from the right,
and the sweep runs mu through the rows again from it (v, dg, one row of g in 8; dv written: 17 bytes). 29 in all.

mu is linear in its carry. In segment s with mu entering from the right C_s,

    mu_i = mu_local_i + Phi_i C_s,    Phi_i = c_i c_{i+1} ... c_{end-1},    c_k = b2 conj(g_k^2),

where mu_local runs the sweep from 0. So:
  1. `_adj_local_kernel`: the landed sweep from mu = 0 in every segment (17 bytes an element): dv_local, the
     parameter-gradient shares, the segment's (Phi_first, mu_local_first) = (Cc, Dc) for the landed carry scan, and
     the leftmost row whose |Phi_i| exceeds THRESHOLD (the suffix product runs right to left beside mu).
  2. `_adj_carry_kernel` (landed): C_s for every segment.
  3. `_adj_fix_kernel`: from the segment's last row down to that row, dv_i -= Re(Phi_i C_s) and the shares gain
     their C_s terms (g, dv read, dv written: 16 bytes a fixed row).
Rows left of the fixed ones keep dv_local: each differs from the exact value by |Phi_i C_s| <= THRESHOLD |C_s|
(2^-30 |C_s|, 2^6 below the float32 rounding of C_s itself), and so does each row's term of the shares. The
resolvent forgets its boundary geometrically away from the spectrum (|Phi| falls with every row where |c| < 1), so
the fixed rows are few where Im z is not small; where |Phi| stays above the threshold the whole segment is fixed
and the adjoint moves 33 bytes an element against 29.

    python3 bk_fix.py check              # CPU (TRITON_INTERPRET=1) or GPU: against the landed adjoint and float64
    python3 bk_fix.py time OUT.json      # GPU: fwd+bwd from CUDA graphs, landed against fixed, 3 rounds
    python3 bk_fix.py profile            # GPU: kernel times at (16, 16384, 64), bench inputs
"""

from __future__ import annotations

import json
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

from kernels.bk_core.naive import bk_core_sequential  # noqa: E402
from kernels.bk_core.triton import (  # noqa: E402
    _adj_carry_kernel,
    _adj_quad,
    _adj_sweep_kernel,
    _carry_blocks,
    _cf_quad,
    _channel_params,
    _load4,
    _plan,
    _program,
    _quad,
    _row,
    _segment_launch,
    _segment_value,
    _store_param_grads,
    _sweep,
    _vmask,
    bk_core_triton,
)
from kernels.grid import cdiv  # noqa: E402
from kernels.launch import launch  # noqa: E402
from kernels.masking import keep  # noqa: E402

THRESHOLD = 2.0**-30


# ----------------------------------------------------------------------------------------------- pass 1
@triton.jit
def _phi_step(gr, gi, valid, row, b2, pr, pi, r, thr2, MASKED: tl.constexpr):
    """Phi <- c Phi with c = b2 conj(g^2) of the row; r <- row where |Phi|^2 > thr2 (right to left: the last set is
    the leftmost)."""
    cr = b2 * (gr * gr - gi * gi)
    ci = -2.0 * b2 * gr * gi
    npr = cr * pr - ci * pi
    npi = cr * pi + ci * pr
    r = tl.where(valid & (npr * npr + npi * npi > thr2), row, r)
    return keep(valid, npr, pr, MASKED), keep(valid, npi, pi, MASKED), r


@triton.jit
def _phi4(g0r, g0i, g1r, g1i, g2r, g2i, g3r, g3i, k0, k1, k2, k3, i, b2, pr, pi, r, thr2, MASKED: tl.constexpr):
    """_phi_step over the rows i+3, i+2, i+1, i."""
    pr, pi, r = _phi_step(g3r, g3i, k3, i + 3, b2, pr, pi, r, thr2, MASKED)
    pr, pi, r = _phi_step(g2r, g2i, k2, i + 2, b2, pr, pi, r, thr2, MASKED)
    pr, pi, r = _phi_step(g1r, g1i, k1, i + 1, b2, pr, pi, r, thr2, MASKED)
    return _phi_step(g0r, g0i, k0, i, b2, pr, pi, r, thr2, MASKED)


@triton.jit
def _local_step(V, GR, GI, DGR, DGI, DV, cols, i, start, end, cmask, wr, wi, ar0, ai, b2, mr, mi, acc_r, acc_i,
                acc_b, pr, pi, r, thr2, N, C, REVERSE: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """The landed _adj_resweep_step (rows i+7 .. i, g recomputed from V) with Phi and r carried beside mu."""
    ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3 = _quad(i, end, cmask, N, C, REVERSE, cols, MASKED)
    kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3 = _quad(i + 4, end, cmask, N, C, REVERSE, cols, MASKED)
    kp = _vmask(cmask, start, i)
    op = cols + _row(i - 1, N, REVERSE) * C
    hr = tl.where(kp, tl.load(GR + op, mask=kp, other=0.0), wr)
    hi = tl.where(kp, tl.load(GI + op, mask=kp, other=0.0), wi)
    ra0, ra1, ra2, ra3 = _load4(DGR, ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3)
    ia0, ia1, ia2, ia3 = _load4(DGI, ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3)
    rb0, rb1, rb2, rb3 = _load4(DGR, kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3)
    ib0, ib1, ib2, ib3 = _load4(DGI, kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3)
    ga0r, ga0i, ga1r, ga1i, ga2r, ga2i, ga3r, ga3i = _cf_quad(
        V, hr, hi, ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3, ar0, ai, b2, MASKED
    )
    gb0r, gb0i, gb1r, gb1i, gb2r, gb2i, gb3r, gb3i = _cf_quad(
        V, ga3r, ga3i, kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3, ar0, ai, b2, MASKED
    )
    mr, mi, acc_r, acc_i, acc_b = _adj_quad(
        DV, gb0r, gb0i, gb1r, gb1i, gb2r, gb2i, gb3r, gb3i, rb0, ib0, rb1, ib1, rb2, ib2, rb3, ib3,
        kb0, kb1, kb2, kb3, ob0, ob1, ob2, ob3, mr, mi, b2, acc_r, acc_i, acc_b, MASKED,
    )  # fmt: skip
    pr, pi, r = _phi4(gb0r, gb0i, gb1r, gb1i, gb2r, gb2i, gb3r, gb3i, kb0, kb1, kb2, kb3, i + 4, b2, pr, pi, r,
                      thr2, MASKED)  # fmt: skip
    mr, mi, acc_r, acc_i, acc_b = _adj_quad(
        DV, ga0r, ga0i, ga1r, ga1i, ga2r, ga2i, ga3r, ga3i, ra0, ia0, ra1, ia1, ra2, ia2, ra3, ia3,
        ka0, ka1, ka2, ka3, oa0, oa1, oa2, oa3, mr, mi, b2, acc_r, acc_i, acc_b, MASKED,
    )  # fmt: skip
    pr, pi, r = _phi4(ga0r, ga0i, ga1r, ga1i, ga2r, ga2i, ga3r, ga3i, ka0, ka1, ka2, ka3, i, b2, pr, pi, r, thr2,
                      MASKED)  # fmt: skip
    return mr, mi, acc_r, acc_i, acc_b, pr, pi, r


@triton.jit
def _adj_local_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, DGR, DGI, DV, RED, AM, FIX, N, C, L, S, n_cblk, thr2,
                      REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """DV = -Re mu_local (mu from 0 at every segment's right end); RED as _adj_sweep_kernel's, of mu_local; AM (B, S,
    4, C): (Phi_first, mu_local_first) of segment s >= 1, the landed (Cc, Dc); FIX (B n_cblk, S) int32: for s < S-1,
    the first logical row _adj_fix_kernel fixes (one left of the leftmost row with |Phi|^2 > thr2 in any channel)."""
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    beta = tl.load(BETA + cols, mask=cmask, other=0.0)
    wr, wi = _segment_value(W, b, s, S, C, cols, cmask)
    start = s * L
    end = tl.minimum(start + L, N)
    bn = b.to(tl.int64) * N * C
    zero = tl.zeros([BLOCK_C], tl.float32)
    mr, mi, acc_r, acc_i, acc_b, pr, pi = zero, zero, zero, zero, zero, zero + 1.0, zero
    r = cols * 0 + end
    bulk = (end - start) // 8 * 8
    for j in range(bulk, end - start, 8):
        mr, mi, acc_r, acc_i, acc_b, pr, pi, r = _local_step(
            V + bn, GR + bn, GI + bn, DGR + bn, DGI + bn, DV + bn, cols, start + j, start, end, cmask, wr, wi, ar0,
            ai, b2, mr, mi, acc_r, acc_i, acc_b, pr, pi, r, thr2, N, C, REVERSE, True,
        )  # fmt: skip
    for j in range(0, bulk, 8):
        mr, mi, acc_r, acc_i, acc_b, pr, pi, r = _local_step(
            V + bn, GR + bn, GI + bn, DGR + bn, DGI + bn, DV + bn, cols, start + bulk - 8 - j, start, end, cmask,
            wr, wi, ar0, ai, b2, mr, mi, acc_r, acc_i, acc_b, pr, pi, r, thr2, N, C, REVERSE, False,
        )  # fmt: skip
    _store_param_grads(RED, b, s, S, C, cols, cmask, n_cblk, beta, acc_r, acc_i, acc_b)
    if s > 0:
        out = AM + (b.to(tl.int64) * S + s) * 4 * C + cols
        tl.store(out, pr, mask=cmask)
        tl.store(out + C, pi, mask=cmask)
        tl.store(out + 2 * C, mr, mask=cmask)
        tl.store(out + 3 * C, mi, mask=cmask)
    if s < S - 1:
        first = tl.min(tl.where(cmask, r, end), axis=0)
        tl.store(FIX + tl.program_id(0) * S + s, tl.maximum(first - 1, start))


# ----------------------------------------------------------------------------------------------- pass 3
@triton.jit
def _fix_row(gr, gi, valid, b2, pr, pi, cr, ci, acc_r, acc_i, acc_b):
    """Row i, right to left, with P = Phi_{i+1} (1 at the segment's last row) and C_s = (cr, ci): the b2 share's term
    Re(conj(g_i) P C), then P <- c_i P and the correction Phi_i C of mu_i -> P, the shares, Re(Phi_i C)."""
    xr = pr * cr - pi * ci
    xi = pr * ci + pi * cr
    sr = gr * gr - gi * gi
    si = -2.0 * gr * gi
    npr = b2 * (sr * pr - si * pi)
    npi = b2 * (sr * pi + si * pr)
    dr = npr * cr - npi * ci
    di = npr * ci + npi * cr
    acc_b += tl.where(valid, gr * xr + gi * xi, 0.0)
    acc_r += tl.where(valid, dr, 0.0)
    acc_i += tl.where(valid, di, 0.0)
    return tl.where(valid, npr, pr), tl.where(valid, npi, pi), acc_r, acc_i, acc_b, dr


@triton.jit
def _fix_load(P, k, o):
    return tl.load(P + o, mask=k, other=0.0)


@triton.jit
def _adj_fix_kernel(GR, GI, BETA, MU, DV, RED, FIX, N, C, L, S, n_cblk, REVERSE: tl.constexpr, BLOCK_C: tl.constexpr):
    """Segments s < S-1: DV -= Re(Phi_i C_s) over the rows FIX .. end-1 (4 a step, right to left, loads first), and
    RED's shares of segment s gain their C_s terms."""
    s, b, cols, cmask = _program(C, n_cblk, BLOCK_C)
    beta = tl.load(BETA + cols, mask=cmask, other=0.0)
    b2 = beta * beta
    cr, ci = _segment_value(MU, b, s, S, C, cols, cmask)
    start = s * L
    end = tl.minimum(start + L, N)
    first = tl.load(FIX + tl.program_id(0) * S + s)
    bn = b.to(tl.int64) * N * C
    GR += bn
    GI += bn
    DV += bn
    zero = tl.zeros([BLOCK_C], tl.float32)
    pr, pi, acc_r, acc_i, acc_b = zero + 1.0, zero, zero, zero, zero
    for k in range(0, tl.cdiv(end - first, 4)):
        i = end - 4 * (k + 1)
        k0 = _vmask(cmask, start - 1, i)  # row >= start
        k1 = _vmask(cmask, start - 1, i + 1)
        k2 = _vmask(cmask, start - 1, i + 2)
        k3 = _vmask(cmask, start - 1, i + 3)
        o0 = cols + _row(i, N, REVERSE) * C
        o1 = cols + _row(i + 1, N, REVERSE) * C
        o2 = cols + _row(i + 2, N, REVERSE) * C
        o3 = cols + _row(i + 3, N, REVERSE) * C
        g3r, g3i, d3 = _fix_load(GR, k3, o3), _fix_load(GI, k3, o3), _fix_load(DV, k3, o3)
        g2r, g2i, d2 = _fix_load(GR, k2, o2), _fix_load(GI, k2, o2), _fix_load(DV, k2, o2)
        g1r, g1i, d1 = _fix_load(GR, k1, o1), _fix_load(GI, k1, o1), _fix_load(DV, k1, o1)
        g0r, g0i, d0 = _fix_load(GR, k0, o0), _fix_load(GI, k0, o0), _fix_load(DV, k0, o0)
        pr, pi, acc_r, acc_i, acc_b, e3 = _fix_row(g3r, g3i, k3, b2, pr, pi, cr, ci, acc_r, acc_i, acc_b)
        pr, pi, acc_r, acc_i, acc_b, e2 = _fix_row(g2r, g2i, k2, b2, pr, pi, cr, ci, acc_r, acc_i, acc_b)
        pr, pi, acc_r, acc_i, acc_b, e1 = _fix_row(g1r, g1i, k1, b2, pr, pi, cr, ci, acc_r, acc_i, acc_b)
        pr, pi, acc_r, acc_i, acc_b, e0 = _fix_row(g0r, g0i, k0, b2, pr, pi, cr, ci, acc_r, acc_i, acc_b)
        tl.store(DV + o3, d3 - e3, mask=k3)
        tl.store(DV + o2, d2 - e2, mask=k2)
        tl.store(DV + o1, d1 - e1, mask=k1)
        tl.store(DV + o0, d0 - e0, mask=k0)
    segs = (tl.num_programs(0) // n_cblk) * S
    red = RED + cols.to(tl.int64) * segs + b * S + s
    tl.store(red, tl.load(red, mask=cmask, other=0.0) - acc_r, mask=cmask)
    tl.store(red + C * segs, tl.load(red + C * segs, mask=cmask, other=0.0) + 2.0 * beta * acc_b, mask=cmask)
    tl.store(red + 2 * C * segs, tl.load(red + 2 * C * segs, mask=cmask, other=0.0) + acc_r, mask=cmask)
    tl.store(red + 3 * C * segs, tl.load(red + 3 * C * segs, mask=cmask, other=0.0) + acc_i, mask=cmask)


# ----------------------------------------------------------------------------------------------- launcher
def adjoint_fixed(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, reverse: bool, chunk, threshold=THRESHOLD):
    """The landed _adjoint's inputs and outputs (dv, grads (4, C)), and the fix-up's first rows (B n_cblk, S)."""
    B, N, C = g_re.shape
    block_c, n_cblk, L, S = _plan(B, N, C, chunk)
    dv = torch.empty_like(g_re)
    red = torch.empty(4, C, B * S, device=g_re.device, dtype=torch.float32)
    am = torch.empty(B, S, 4, C, device=g_re.device, dtype=torch.float32)
    fix = torch.empty(B * n_cblk, S, device=g_re.device, dtype=torch.int32)
    opts = _segment_launch(_adj_sweep_kernel, block_c)
    launch(_adj_local_kernel, (B * n_cblk, S),
        v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, dv, red, am, fix, N, C, L, S, n_cblk,
        float(threshold) ** 2, REVERSE=reverse, BLOCK_C=block_c, **opts,
    )  # fmt: skip
    if S > 1:
        mu = torch.empty(B, S, 2, C, device=g_re.device, dtype=torch.float32)
        block_s, cb, cw = _carry_blocks(S, block_c)
        launch(
            _adj_carry_kernel, (B * cdiv(C, cb),), am, mu, C, S, cdiv(C, cb), BLOCK_S=block_s, BLOCK_C=cb, num_warps=cw
        )
        launch(_adj_fix_kernel, (B * n_cblk, S - 1),
            g_re, g_im, beta, mu, dv, red, fix, N, C, L, S, n_cblk, REVERSE=reverse, BLOCK_C=block_c, **opts,
        )  # fmt: skip
    return dv, red.sum(-1), fix


class _FixedSweep(torch.autograd.Function):
    """The landed causal sweep forward, the fixed adjoint backward."""

    @staticmethod
    def forward(ctx, v, h0, beta, z_re, z_im, chunk, threshold):
        g_re, g_im, carry = _sweep(v, h0, beta, z_re, z_im, False, chunk)
        ctx.save_for_backward(v, h0, beta, z_re, z_im, carry, g_re, g_im)
        ctx.chunk, ctx.threshold = chunk, threshold
        return g_re, g_im

    @staticmethod
    def backward(ctx, dg_re, dg_im):
        v, h0, beta, z_re, z_im, carry, g_re, g_im = ctx.saved_tensors
        dg_re, dg_im = dg_re.float().contiguous(), dg_im.float().contiguous()
        dv, grads, _ = adjoint_fixed(
            v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, False, ctx.chunk, ctx.threshold
        )
        return dv, *grads.unbind(), None, None


def bk_core_fixed(v, h0, beta, z_re, z_im, chunk=None, threshold=THRESHOLD):
    """Causal BK-Core: v (B, N, C); h0, beta, z_re, z_im (C,) float32 -> (g_re, g_im), adjoint by adjoint_fixed."""
    return _FixedSweep.apply(v, h0, beta, z_re, z_im, chunk, threshold)


# ----------------------------------------------------------------------------------------------- inputs, checks
def inputs(kind: str, B: int, N: int, C: int, device: str, seed: int = 0):
    """bench: bench/kernels.py's BK-Core case; model: BKCore's initial parameters (h0 0, beta 1, e in [-1, 1],
    eta in [0.1, 0.5]) and potentials 5 tanh(x / 5), x ~ N(0, 1)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if kind == "bench":
        v = torch.randn(B, N, C, generator=gen)
        h0, beta = torch.randn(C, generator=gen) * 0.1, torch.rand(C, generator=gen) + 0.5
        z_re, z_im = torch.zeros(C), torch.rand(C, generator=gen) + 0.5
    else:
        v = 5.0 * torch.tanh(torch.randn(B, N, C, generator=gen) / 5.0)
        h0, beta = torch.zeros(C), torch.ones(C)
        z_re, z_im = torch.linspace(-1.0, 1.0, C), torch.linspace(0.1, 0.5, C)
    return [t.to(device).contiguous().requires_grad_() for t in (v, h0, beta, z_re, z_im)]


def _grads(fn, args, dgr, dgi):
    for t in args:
        t.grad = None
    g_re, g_im = fn(*args)
    torch.autograd.backward((g_re, g_im), (dgr, dgi))
    return [t.grad.clone() for t in args]


def check(device: str) -> None:
    """The fixed adjoint against the landed one and against float64 autograd of the sequential reference."""
    cases = [  # (kind, B, N, C, chunk, threshold)
        ("bench", 2, 100, 20, 12, THRESHOLD),
        ("model", 2, 100, 20, 12, THRESHOLD),
        ("bench", 1, 70, 9, 8, THRESHOLD),
        ("bench", 2, 64, 16, None, THRESHOLD),
        ("bench", 1, 37, 5, 8, THRESHOLD),
        ("model", 1, 96, 70, 16, THRESHOLD),  # two channel blocks
        ("bench", 2, 100, 20, 12, 0.0),  # every row fixed
        ("bench", 2, 100, 20, 12, 1e18),  # one row a segment fixed: dv_local kept elsewhere (must fail the bound)
        ("bench", 1, 1024, 16, 128, THRESHOLD),  # segments of the bench's length: part of each fixed
        ("model", 1, 1024, 16, 128, THRESHOLD),
    ]
    for kind, B, N, C, chunk, thr in cases:
        args = inputs(kind, B, N, C, device)
        gen = torch.Generator(device="cpu").manual_seed(1)
        dgr, dgi = (torch.randn(B, N, C, generator=gen).to(device) for _ in range(2))
        landed = _grads(lambda *a, ch=chunk: bk_core_triton(*a, chunk=ch), args, dgr, dgi)
        fixed = _grads(lambda *a, ch=chunk, t=thr: bk_core_fixed(*a, chunk=ch, threshold=t), args, dgr, dgi)
        a64 = [t.detach().double().requires_grad_() for t in args]
        ref = _grads(lambda *a: bk_core_sequential(*a), a64, dgr.double(), dgi.double())
        with torch.no_grad():
            g_re, g_im, carry = _sweep(*[t.detach() for t in args], False, chunk)
            _, _, fix = adjoint_fixed(*[t.detach() for t in args], carry, g_re, g_im, dgr, dgi, False, chunk, thr)
        S = fix.shape[1]
        L = _plan(B, N, C, chunk)[2]
        rows = sum(min((s + 1) * L, N) - int(fix[p, s]) for p in range(fix.shape[0]) for s in range(S - 1))
        total = fix.shape[0] * sum(min((s + 1) * L, N) - s * L for s in range(S - 1))
        errs = []
        for name, lt, ft, rt in zip(("v", "h0", "beta", "z_re", "z_im"), landed, fixed, ref, strict=True):
            scale = rt.abs().max().item()
            e_land = (lt.double() - rt).abs().max().item() / scale
            e_fix = (ft.double() - rt).abs().max().item() / scale
            errs.append(f"{name} {e_land:.1e}/{e_fix:.1e}")
            ok = e_fix <= max(4 * e_land, 1e-6) if thr < 1 else True
            assert ok, (kind, B, N, C, chunk, thr, name, e_land, e_fix)
        print(f"{kind} ({B}, {N}, {C}) chunk {chunk} thr {thr:.1e}: fixed rows {rows}/{total}; "
              f"max err / max|ref|, landed/fixed: " + ", ".join(errs), flush=True)  # fmt: skip


def time_all(out: str) -> None:
    """fwd+bwd from CUDA graphs, landed and fixed, interleaved, 3 rounds, median; fixed rows and kernel times."""
    import triton.testing

    rows = {}
    for kind in ("bench", "model"):
        for shape in ((16, 16384, 64), (1, 16384, 16), (8, 4096, 32)):
            args = inputs(kind, *shape, "cuda")
            dgr, dgi = (torch.randn(*shape, device="cuda") for _ in range(2))
            fns = {"landed": bk_core_triton, "fixed": bk_core_fixed}
            diff = [
                ((x - y).abs().max() / y.abs().max()).item()
                for x, y in zip(
                    _grads(fns["fixed"], args, dgr, dgi), _grads(fns["landed"], args, dgr, dgi), strict=True
                )
            ]

            def step(fn, args=args, dgr=dgr, dgi=dgi):
                g_re, g_im = fn(*args)
                torch.autograd.backward((g_re, g_im), (dgr, dgi))

            times = {name: [] for name in fns}
            for _ in range(3):
                for name, fn in fns.items():
                    times[name].append(triton.testing.do_bench_cudagraph(lambda fn=fn: step(fn), rep=100))
            with torch.no_grad():
                a = [t.detach() for t in args]
                g_re, g_im, carry = _sweep(*a, False, None)
                fix = adjoint_fixed(*a, carry, g_re, g_im, dgr, dgi, False, None)[2]
                B, N, C = shape
                L, S = _plan(B, N, C, None)[2:]
                ends = torch.clamp((torch.arange(S - 1, device="cuda") + 1) * L, max=N)
                fixed_rows = (ends[None, :] - fix[:, : S - 1]).sum().item() / (fix.shape[0] * (S - 1) * L)
            med = {k: statistics.median(v) for k, v in times.items()}
            gbs = 32 * B * N * C / 1e6  # MB at 32 bytes an element; MB per ms is GB/s
            rows[f"{kind} {shape}"] = dict(ms=med, rounds=times, fixed_row_fraction=fixed_rows, rel_diff=diff)
            print(f"{kind} {shape}: landed {med['landed']:.4f} ms ({gbs / med['landed']:.0f} GB/s by 32 B), fixed "
                  f"{med['fixed']:.4f} ({gbs / med['fixed']:.0f}); fixed rows {fixed_rows:.2f}; "
                  f"max rel diff {max(diff):.1e}", flush=True)  # fmt: skip
    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT"))  # fmt: skip
    with open(out, "w") as f:
        json.dump(dict(env=env, rows=rows), f, indent=1)


def profile(kind: str = "bench", shape=(16, 16384, 64)) -> None:
    """Kernel times (torch.profiler, eager, 20 calls each) of landed and fixed fwd+bwd."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    args = inputs(kind, *shape, "cuda")
    dgr, dgi = (torch.randn(*shape, device="cuda") for _ in range(2))
    for name, fn in (("landed", bk_core_triton), ("fixed", bk_core_fixed)):
        _grads(fn, args, dgr, dgi)
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                _grads(fn, args, dgr, dgi)
            torch.cuda.synchronize()
        print(f"== {name} {kind} {shape}, 20 calls")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12), flush=True)


if __name__ == "__main__":
    if (
        len(sys.argv) < 2
        or sys.argv[1] not in ("check", "profile", "time")
        or (sys.argv[1] == "time") != (len(sys.argv) == 3)
    ):
        print("usage: bk_fix.py check | profile | time OUT.json", file=sys.stderr)
        sys.exit(2)
    if sys.argv[1] == "check":
        check("cuda" if torch.cuda.is_available() else "cpu")
    elif sys.argv[1] == "profile":
        profile()
    else:
        time_all(sys.argv[2])
