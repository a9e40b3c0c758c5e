"""Triton chunked causal linear attention with ELU+1 features and the phi(q).z normaliser.

    o_t = num_t / den_t,  num_t = sum_{s<=t} (fq_t . fk_s) v_s,  den_t = sum_{s<=t} fq_t . fk_s + eps

with fq = phi(q), fk = phi(k), phi(x) = elu(x) + 1 (applied on load). One program per
(block of BV value columns, batch*head) walks the chunks in order, carrying S = sum fk^T v (BK x BV)
and z = sum fk (BK) in float32 registers; inside a chunk the causal part is a masked BT x BT product.
Matrix products take the input dtype (bf16/fp16 tensor cores; exact fp32 for fp32 inputs) with
float32 accumulation.

Backward: with dnum = do / den and dden = -(do . o) / den (the value-column sum, done beforehand in one pass:
kernels/row_dot.py),
the normaliser is a value column of ones, so
    dfq_t = sum_{s<=t} (dnum_t . v_s + dden_t) fk_s
    dfk_s = sum_{t>=s} (dnum_t . v_s + dden_t) fq_t,   dv_s = sum_{t>=s} (fq_t . fk_s) dnum_t
Per chunk these are masked BT x BT products plus terms of four states: S, z over the earlier chunks and
dS = sum fq^T dnum, dz = sum dden fq over the later ones. Two backwards (`backward=`):
  "sequential": dq is a forward sweep carrying S, z; dk and dv a backward sweep carrying dS, dz (one
      program per (value block, batch*head), all the chunk work inside the loop). They share the per-chunk
      helpers; partial dq/dk over value blocks are summed afterwards, the dden terms added by value block 0.
  "chunked" (fla's scheme): one launch walks the chunks both ways (grid axis 2 picks the direction) doing
      only the state updates, and stores the states of every chunk (S, dS in the input dtype, which is what
      the products take them in; z, dz in float32). Then every chunk in parallel, in two kernels that each
      write their gradient once, in the input dtype: dq and dk per (key block, chunk, batch*head), looping
      over value tiles to sum G = dnum v^T (the same BT x BT matrix serves dk transposed) and the state
      terms; dv per (value block, chunk, batch*head), looping over key tiles to sum phi(k) phi(q)^T and
      phi(k) dS. Its tiles (_chunked_cfg) compile without register spill on sm_90 in bf16 and fp16 at head
      dims 64 and 128; _launch_plan lists every kernel with the tiles it is launched with.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.custom_op import differentiable_op
from kernels.grid import cdiv, next_power_of_2
from kernels.launch import launch
from kernels.row_dot import _row_dot_kernel, row_dot, row_dot_consts


@triton.jit
def _phi(x):
    return tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _dphi(x):
    return tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))


@triton.jit
def _cols_in(c0, BC: tl.constexpr, D: tl.constexpr):
    """The columns c0 + arange(BC) that are < D; all true when BC divides D (so that the mask is constant
    along the tile and loads stay vectorised)."""
    if D % BC == 0:
        return tl.full([BC], 1, tl.int1)
    else:
        return (c0 + tl.arange(0, BC)) < D


@triton.jit
def _la_fwd_kernel(
    Q,
    K,
    V,
    OUT,
    DEN,
    N,
    eps,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """Q, K: (BH, N, DK); V, OUT: (BH, N, DV); DEN: (BH, N) float32. Grid (cdiv(DV, BV), BH)."""
    eps = tl.cast(eps, tl.float32)  # inductor passes Python floats as fp64
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    kmask = offs_k < DK
    vmask = offs_v < DV
    Q += i_bh * N * DK
    K += i_bh * N * DK
    V += i_bh * N * DV
    OUT += i_bh * N * DV
    DEN += i_bh * N
    S = tl.zeros([BK, BV], dtype=tl.float32)
    z = tl.zeros([BK], dtype=tl.float32)
    causal = offs_t[:, None] >= offs_t[None, :]
    for start in range(0, N, BT):
        t = start + offs_t
        tm = t < N
        mk = tm[:, None] & kmask[None, :]
        mv = tm[:, None] & vmask[None, :]
        q = tl.load(Q + t[:, None] * DK + offs_k[None, :], mask=mk, other=0.0).to(tl.float32)
        k = tl.load(K + t[:, None] * DK + offs_k[None, :], mask=mk, other=0.0).to(tl.float32)
        v = tl.load(V + t[:, None] * DV + offs_v[None, :], mask=mv, other=0.0)
        fq = tl.where(mk, _phi(q), 0.0)
        fk = tl.where(mk, _phi(k), 0.0)
        fq_c = fq.to(V.dtype.element_ty)
        fk_c = fk.to(V.dtype.element_ty)
        A = tl.dot(fq_c, tl.trans(fk_c), input_precision=PREC)
        A = tl.where(causal, A, 0.0)
        num = tl.dot(A.to(V.dtype.element_ty), v, input_precision=PREC)
        num += tl.dot(fq_c, S.to(V.dtype.element_ty), input_precision=PREC)
        den = tl.sum(A, axis=1) + tl.sum(fq * z[None, :], axis=1) + eps
        o = num / den[:, None]
        tl.store(OUT + t[:, None] * DV + offs_v[None, :], o.to(OUT.dtype.element_ty), mask=mv)
        if i_v == 0:
            tl.store(DEN + t, den, mask=tm)
        S += tl.dot(tl.trans(fk_c), v, input_precision=PREC)
        z += tl.sum(fk, axis=0)


@triton.jit
def _bwd_inputs(Q, K, V, DO, DEN, DDEN, i_bh, N, DK: tl.constexpr, DV: tl.constexpr):
    """The backward's inputs offset to batch*head i_bh."""
    return Q + i_bh * N * DK, K + i_bh * N * DK, V + i_bh * N * DV, DO + i_bh * N * DV, DEN + i_bh * N, DDEN + i_bh * N


@triton.jit
def _bwd_chunk_load(Q, K, V, DO, DEN, DDEN, t, offs_k, offs_v, N, first, DK: tl.constexpr, DV: tl.constexpr):
    """Rows t of one batch*head (pointers offset to it): q, k, phi(q), phi(k) (float32, zero outside), v,
    dnum = do / den (input dtype), dden (zero unless first), and the (rows, DK) / (rows, BV) masks."""
    tm = t < N
    mk = tm[:, None] & (offs_k < DK)[None, :]
    mv = tm[:, None] & (offs_v < DV)[None, :]
    q = tl.load(Q + t[:, None] * DK + offs_k[None, :], mask=mk, other=0.0).to(tl.float32)
    k = tl.load(K + t[:, None] * DK + offs_k[None, :], mask=mk, other=0.0).to(tl.float32)
    v = tl.load(V + t[:, None] * DV + offs_v[None, :], mask=mv, other=0.0)
    do = tl.load(DO + t[:, None] * DV + offs_v[None, :], mask=mv, other=0.0).to(tl.float32)
    den = tl.load(DEN + t, mask=tm, other=1.0)
    dd = tl.load(DDEN + t, mask=tm, other=0.0) * first
    fq = tl.where(mk, _phi(q), 0.0)
    fk = tl.where(mk, _phi(k), 0.0)
    dnum = (do / den[:, None]).to(V.dtype.element_ty)
    return q, k, fq, fk, v, dnum, dd, mk, mv


@triton.jit
def _bwd_dq_chunk(q, fk_c, v, dnum, dd, S, z, causal, PREC: tl.constexpr):
    """dq (float32) of one chunk; S (BK x BV), z (BK): sum fk^T v and sum fk over the earlier chunks."""
    G = tl.dot(dnum, tl.trans(v), input_precision=PREC) + dd[:, None]
    G = tl.where(causal, G, 0.0)
    dfq = tl.dot(G.to(v.dtype), fk_c, input_precision=PREC)
    dfq += tl.dot(dnum, tl.trans(S.to(v.dtype)), input_precision=PREC)
    dfq += dd[:, None] * z[None, :]
    return dfq * _dphi(q)


@triton.jit
def _bwd_dv_chunk(fq_c, fk_c, dnum, dS, causal_t, PREC: tl.constexpr):
    """dv (float32) of one chunk; dS (BK x BV): sum fq^T dnum over the later chunks."""
    At = tl.dot(fk_c, tl.trans(fq_c), input_precision=PREC)
    At = tl.where(causal_t, At, 0.0)
    dv = tl.dot(At.to(dnum.dtype), dnum, input_precision=PREC)
    dv += tl.dot(fk_c, dS.to(dnum.dtype), input_precision=PREC)
    return dv


@triton.jit
def _bwd_dk_chunk(k, fq_c, v, dnum, dd, dS, dz, causal_t, PREC: tl.constexpr):
    """dk (float32) of one chunk; dS (BK x BV), dz (BK): sum fq^T dnum and sum dden fq over the later chunks."""
    Gt = tl.dot(v, tl.trans(dnum), input_precision=PREC) + dd[None, :]
    Gt = tl.where(causal_t, Gt, 0.0)
    dfk = tl.dot(Gt.to(v.dtype), fq_c, input_precision=PREC)
    dfk += tl.dot(v, tl.trans(dS.to(v.dtype)), input_precision=PREC)
    dfk += dz[None, :]
    return dfk * _dphi(k)


@triton.jit
def _la_bwd_dq_kernel(
    Q,
    K,
    V,
    DO,
    DEN,
    DDEN,
    DQ,
    N,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """DQ: (NV, BH, N, DK) float32 partials. Grid (NV, BH)."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    n_bh = tl.num_programs(1).to(tl.int64)
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    Q, K, V, DO, DEN, DDEN = _bwd_inputs(Q, K, V, DO, DEN, DDEN, i_bh, N, DK, DV)
    DQ += (i_v * n_bh + i_bh) * N * DK
    S = tl.zeros([BK, BV], dtype=tl.float32)
    z = tl.zeros([BK], dtype=tl.float32)
    causal = offs_t[:, None] >= offs_t[None, :]
    first = (i_v == 0).to(tl.float32)
    for start in range(0, N, BT):
        t = start + offs_t
        q, k, fq, fk, v, dnum, dd, mk, mv = _bwd_chunk_load(Q, K, V, DO, DEN, DDEN, t, offs_k, offs_v, N, first, DK, DV)
        fk_c = fk.to(V.dtype.element_ty)
        dq = _bwd_dq_chunk(q, fk_c, v, dnum, dd, S, z, causal, PREC)
        tl.store(DQ + t[:, None] * DK + offs_k[None, :], dq, mask=mk)
        S += tl.dot(tl.trans(fk_c), v, input_precision=PREC)
        z += tl.sum(fk, axis=0)


@triton.jit
def _la_bwd_dkv_kernel(
    Q,
    K,
    V,
    DO,
    DEN,
    DDEN,
    DK_,
    DV_,
    N,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """DK_: (NV, BH, N, DK) float32 partials; DV_: (BH, N, DV). Grid (NV, BH); sweeps chunks backwards."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    n_bh = tl.num_programs(1).to(tl.int64)
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    Q, K, V, DO, DEN, DDEN = _bwd_inputs(Q, K, V, DO, DEN, DDEN, i_bh, N, DK, DV)
    DV_ += i_bh * N * DV
    DK_ += (i_v * n_bh + i_bh) * N * DK
    dS = tl.zeros([BK, BV], dtype=tl.float32)
    dz = tl.zeros([BK], dtype=tl.float32)
    # rows index keys s, columns index queries t: keep s <= t
    causal_t = offs_t[:, None] <= offs_t[None, :]
    first = (i_v == 0).to(tl.float32)
    n_chunks = tl.cdiv(N, BT)
    for i in range(0, n_chunks):
        t = (n_chunks - 1 - i) * BT + offs_t
        q, k, fq, fk, v, dnum, dd, mk, mv = _bwd_chunk_load(Q, K, V, DO, DEN, DDEN, t, offs_k, offs_v, N, first, DK, DV)
        fq_c = fq.to(V.dtype.element_ty)
        fk_c = fk.to(V.dtype.element_ty)
        dv = _bwd_dv_chunk(fq_c, fk_c, dnum, dS, causal_t, PREC)
        tl.store(DV_ + t[:, None] * DV + offs_v[None, :], dv.to(DV_.dtype.element_ty), mask=mv)
        dk = _bwd_dk_chunk(k, fq_c, v, dnum, dd, dS, dz, causal_t, PREC)
        tl.store(DK_ + t[:, None] * DK + offs_k[None, :], dk, mask=mk)
        dS += tl.dot(tl.trans(fq_c), dnum, input_precision=PREC)
        dz += tl.sum(fq * dd[:, None], axis=0)


@triton.jit
def _la_bwd_states_kernel(
    Q,
    K,
    V,
    DO,
    DEN,
    DDEN,
    ST,
    ZT,
    N,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """ST: (2, BH, NC, DK, DV) in the input dtype; ZT: (2, BH, NC, DK) float32. Grid (NV, BH, 2).

    Direction 0 walks forwards and stores, per chunk, S = sum phi(k)^T v and z = sum phi(k) over the earlier
    chunks; direction 1 walks backwards and stores dS = sum phi(q)^T dnum and dz = sum dden phi(q) over the
    later ones. ZT is written by value block 0.
    """
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    rev = tl.program_id(2)
    n_bh = tl.num_programs(1).to(tl.int64)
    n_chunks = tl.cdiv(N, BT)
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    kmask = offs_k < DK
    vmask = offs_v < DV
    smask = kmask[:, None] & vmask[None, :]
    # direction 0: features of k, values v; direction 1: features of q, values do / den, weights dden
    reverse = rev == 1
    if reverse:
        X = Q + i_bh * N * DK
        Y = DO + i_bh * N * DV
    else:
        X = K + i_bh * N * DK
        Y = V + i_bh * N * DV
    DEN += i_bh * N
    DDEN += i_bh * N
    ST += (rev * n_bh + i_bh) * n_chunks * DK * DV
    ZT += (rev * n_bh + i_bh) * n_chunks * DK
    n_den = rev * N  # rows whose den, dden are read: none in direction 0
    S = tl.zeros([BK, BV], dtype=tl.float32)
    z = tl.zeros([BK], dtype=tl.float32)
    for i in range(0, n_chunks):
        c = tl.where(reverse, n_chunks - 1 - i, i)
        t = c * BT + offs_t
        tm = t < N
        mk = tm[:, None] & kmask[None, :]
        mv = tm[:, None] & vmask[None, :]
        x = tl.load(X + t[:, None] * DK + offs_k[None, :], mask=mk, other=0.0).to(tl.float32)
        y = tl.load(Y + t[:, None] * DV + offs_v[None, :], mask=mv, other=0.0).to(tl.float32)
        den = tl.load(DEN + t, mask=t < n_den, other=1.0)
        w = tl.load(DDEN + t, mask=t < n_den, other=1.0)
        fx = tl.where(mk, _phi(x), 0.0)
        c64 = c.to(tl.int64)
        tl.store(ST + c64 * DK * DV + offs_k[:, None] * DV + offs_v[None, :], S.to(ST.dtype.element_ty), mask=smask)
        if i_v == 0:
            tl.store(ZT + c64 * DK + offs_k, z, mask=kmask)
        y_c = (y / den[:, None]).to(V.dtype.element_ty)
        S += tl.dot(tl.trans(fx.to(V.dtype.element_ty)), y_c, input_precision=PREC)
        z += tl.sum(fx * w[:, None], axis=0)


@triton.jit
def _chunk_program(N, BT: tl.constexpr, BX: tl.constexpr, DX: tl.constexpr):
    """Where a program of the chunk-parallel backward works, for its grid (cdiv(DX, BX), NC, BH): the chunk's
    row offsets offs_t (BT,) and row mask tm, the block's columns offs_x (BX,) and mask, the chunk's first
    row in the (BH * N, D) inputs, and the indices of its forward and reverse states in ST, ZT."""
    i_x = tl.program_id(0)
    i_c = tl.program_id(1)
    i_bh = tl.program_id(2).to(tl.int64)
    n_bh = tl.num_programs(2).to(tl.int64)
    n_chunks = tl.cdiv(N, BT)
    offs_t = tl.arange(0, BT)
    offs_x = i_x * BX + tl.arange(0, BX)
    xmask = _cols_in(i_x * BX, BX, DX)
    tm = i_c * BT + offs_t < N
    row0 = i_bh * N + i_c * BT
    return offs_t, offs_x, xmask, tm, row0, i_bh * n_chunks + i_c, (n_bh + i_bh) * n_chunks + i_c


@triton.jit
def _la_bwd_chunk_kernel(
    Q,
    K,
    V,
    DO,
    DEN,
    DDEN,
    ST,
    ZT,
    DQ_OUT,
    DK_OUT,
    N,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """dq and dk of one (key block, chunk, batch*head). ST, ZT: _la_bwd_states_kernel's; DQ_OUT, DK_OUT:
    (BH, N, DK) in the input dtype. Grid (cdiv(DK, BK), NC, BH).

    A loop over BV-wide value tiles accumulates, in float32, G = dnum v^T (BT x BT) and the state terms
    dnum S^T, v dS^T (BT x BK); the causal products with phi(k), phi(q) and the dden terms follow it.
    dk's chunk matrix is G's transpose: G[t, s] = dnum_t . v_s + dden_t. Addresses are a scalar base
    moved along the loop plus int32 tile offsets shared by the loads of one shape (per-element 64-bit
    pointers hoisted out of the loop cost the registers that spilled). Rows past N load as zeros (do and
    dden too) and key columns past DK are not stored, so phi needs no mask here.
    """
    offs_t, offs_k, kmask, tm, row0, fwd_state, rev_state = _chunk_program(N, BT, BK, DK)
    den = tl.load(DEN + row0 + offs_t, mask=tm, other=1.0)
    # (BT, BV) tiles of v, do and (BV, BK) tiles of S^T, dS^T
    tile_v = offs_t[:, None] * DV + tl.arange(0, BV)[None, :]
    tile_s = tl.arange(0, BV)[:, None] + offs_k[None, :] * DV
    G = tl.zeros([BT, BT], dtype=tl.float32)
    dq = tl.zeros([BT, BK], dtype=tl.float32)
    dk = tl.zeros([BT, BK], dtype=tl.float32)
    for v0 in range(0, DV, BV):
        vmask = _cols_in(v0, BV, DV)
        mv = tm[:, None] & vmask[None, :]
        ms = vmask[:, None] & kmask[None, :]
        v = tl.load(V + row0 * DV + v0 + tile_v, mask=mv, other=0.0)
        do = tl.load(DO + row0 * DV + v0 + tile_v, mask=mv, other=0.0)
        St = tl.load(ST + fwd_state * DK * DV + v0 + tile_s, mask=ms, other=0.0)
        dSt = tl.load(ST + rev_state * DK * DV + v0 + tile_s, mask=ms, other=0.0)
        dnum = (do.to(tl.float32) / den[:, None]).to(V.dtype.element_ty)
        G += tl.dot(dnum, tl.trans(v), input_precision=PREC)
        dq += tl.dot(dnum, St, input_precision=PREC)
        dk += tl.dot(v, dSt, input_precision=PREC)
    dd = tl.load(DDEN + row0 + offs_t, mask=tm, other=0.0)
    causal = offs_t[:, None] >= offs_t[None, :]
    G = tl.where(causal, G + dd[:, None], 0.0).to(V.dtype.element_ty)
    tile_k = offs_t[:, None] * DK + offs_k[None, :]
    mk = tm[:, None] & kmask[None, :]
    k = tl.load(K + row0 * DK + tile_k, mask=mk, other=0.0).to(tl.float32)
    z = tl.load(ZT + fwd_state * DK + offs_k, mask=kmask, other=0.0)
    dq += tl.dot(G, _phi(k).to(V.dtype.element_ty), input_precision=PREC) + dd[:, None] * z[None, :]
    q = tl.load(Q + row0 * DK + tile_k, mask=mk, other=0.0).to(tl.float32)
    tl.store(DQ_OUT + row0 * DK + tile_k, (dq * _dphi(q)).to(DQ_OUT.dtype.element_ty), mask=mk)
    dz = tl.load(ZT + rev_state * DK + offs_k, mask=kmask, other=0.0)
    dk += tl.dot(tl.trans(G), _phi(q).to(V.dtype.element_ty), input_precision=PREC) + dz[None, :]
    tl.store(DK_OUT + row0 * DK + tile_k, (dk * _dphi(k)).to(DK_OUT.dtype.element_ty), mask=mk)


@triton.jit
def _la_bwd_chunk_dv_kernel(
    Q,
    K,
    DO,
    DEN,
    ST,
    DV_OUT,
    N,
    DK: tl.constexpr,
    DV: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PREC: tl.constexpr,
):
    """dv of one (value block, chunk, batch*head): the causal (phi(k) phi(q)^T) dnum plus phi(k) dS.
    ST: _la_bwd_states_kernel's; DV_OUT: (BH, N, DV) in the input dtype. Grid (cdiv(DV, BV), NC, BH).

    A loop over BK-wide key tiles accumulates phi(k) phi(q)^T (BT x BT) and phi(k) dS in float32
    (addressed as in _la_bwd_chunk_kernel). Key columns past DK are masked out of phi (they would add
    1 . 1); rows past N only reach rows of dv that are not stored, or meet dnum = 0.
    """
    offs_t, offs_v, vmask, tm, row0, _, rev_state = _chunk_program(N, BT, BV, DV)
    tile_k = offs_t[:, None] * DK + tl.arange(0, BK)[None, :]
    tile_s = tl.arange(0, BK)[:, None] * DV + offs_v[None, :]
    At = tl.zeros([BT, BT], dtype=tl.float32)
    dv = tl.zeros([BT, BV], dtype=tl.float32)
    for k0 in range(0, DK, BK):
        kmask = _cols_in(k0, BK, DK)
        mk = tm[:, None] & kmask[None, :]
        q = tl.load(Q + row0 * DK + k0 + tile_k, mask=mk, other=0.0).to(tl.float32)
        k = tl.load(K + row0 * DK + k0 + tile_k, mask=mk, other=0.0).to(tl.float32)
        dS = tl.load(ST + rev_state * DK * DV + k0 * DV + tile_s, mask=kmask[:, None] & vmask[None, :], other=0.0)
        fq_c = tl.where(kmask[None, :], _phi(q), 0.0).to(DO.dtype.element_ty)
        fk_c = tl.where(kmask[None, :], _phi(k), 0.0).to(DO.dtype.element_ty)
        At += tl.dot(fk_c, tl.trans(fq_c), input_precision=PREC)
        dv += tl.dot(fk_c, dS, input_precision=PREC)
    # rows index keys s, columns index queries t: keep s <= t
    causal_t = offs_t[:, None] <= offs_t[None, :]
    At = tl.where(causal_t, At, 0.0).to(DO.dtype.element_ty)
    tile_v = offs_t[:, None] * DV + offs_v[None, :]
    mv = tm[:, None] & vmask[None, :]
    do = tl.load(DO + row0 * DV + tile_v, mask=mv, other=0.0).to(tl.float32)
    den = tl.load(DEN + row0 + offs_t, mask=tm, other=1.0)
    dv += tl.dot(At, (do / den[:, None]).to(DO.dtype.element_ty), input_precision=PREC)
    tl.store(DV_OUT + row0 * DV + tile_v, dv.to(DV_OUT.dtype.element_ty), mask=mv)


def _cfg(q, v, chunk_size):
    """Tiles of the forward and the sequential backward: BK, BV, BT, dot precision, warps. float32 tiles
    take half the value width and chunks of at most 32, or at head dim 128 they would need more shared
    memory than an sm_89 has (99 KB; 197 KB at 64-wide tiles, tests/kernels/test_shared_memory.py)."""
    dk, dv = q.shape[-1], v.shape[-1]
    wide = v.dtype != torch.float32
    BK = max(16, next_power_of_2(dk))
    BV = min(64 if wide else 32, max(16, next_power_of_2(dv)))
    BT = max(16, next_power_of_2(int(chunk_size)))
    BT = BT if wide else min(BT, 32)
    prec = "ieee" if v.dtype == torch.float32 else "tf32"
    warps = 4 if BK * BV <= 64 * 64 else 8
    return BK, BV, BT, prec, warps


def _chunked_cfg(q, v, chunk_size):
    """Tiles of the chunk-parallel backward: {kernel name: (constexprs, launch options)}.

    Its chunk is the forward's capped at 64 (a tile of this backward only: the gradients are the same sums
    in another order). The state pass keeps the full key width (one program carries a BK x BV state) with
    value blocks of at most 128 (64 in float32); the dq/dk kernel splits keys into blocks of at most 32 and
    loops over value tiles of at most 32, with 4 warps and 3 stages; the dv kernel splits values into blocks of
    at most 64 and loops over key tiles of at most 128. Chosen by bench/tiles.py on the H200 at (8, 16, N, 128) bf16
    (results/kernels/runs.md, run 11): the fastest choices among those that compile without register spill
    on sm_90 in bf16 and fp16 at head dims 64 and 128 (tests/kernels/test_shared_memory.py; float32 may
    spill). 4-warp dq/dk tiles of 64 keys were up to 3 % faster there but spill 104-560 bytes a thread.
    """
    dk, dv = q.shape[-1], v.shape[-1]
    BT = min(64, max(16, next_power_of_2(int(chunk_size))))
    prec = "ieee" if v.dtype == torch.float32 else "tf32"
    pk, pv = max(16, next_power_of_2(dk)), max(16, next_power_of_2(dv))
    # float32 states of 128 x 128 would need 131 KB of shared memory, above an sm_89's 99 KB
    states = dict(DK=dk, DV=dv, BT=BT, BK=pk, BV=min(64 if v.dtype == torch.float32 else 128, pv), PREC=prec)
    dqk = dict(DK=dk, DV=dv, BT=BT, BK=min(32, pk), BV=min(32, pv), PREC=prec)
    dv_ = dict(DK=dk, DV=dv, BT=BT, BK=min(128, pk), BV=min(64, pv), PREC=prec)
    return {
        "_la_bwd_states_kernel": (states, dict(num_warps=4 if pk * states["BV"] <= 64 * 64 else 8, num_stages=2)),
        "_la_bwd_chunk_kernel": (dqk, dict(num_warps=4, num_stages=3)),
        "_la_bwd_chunk_dv_kernel": (dv_, dict(num_warps=8 if BT * dv_["BK"] >= 64 * 128 else 4, num_stages=2)),
    }


def _launch_plan(q, v, chunk_size):
    """(kernel, constexprs, launch options) of every kernel, as the launchers below launch it for inputs
    shaped and typed as q, v (meta tensors will do): what a compile-only probe of registers and spill
    should compile. The forward and the sequential backward share _cfg's tiles."""
    BK, BV, BT, prec, warps = _cfg(q, v, chunk_size)
    consts = dict(DK=q.shape[-1], DV=v.shape[-1], BT=BT, BK=BK, BV=BV, PREC=prec)
    for fn in (_la_fwd_kernel, _la_bwd_dq_kernel, _la_bwd_dkv_kernel):
        yield fn, consts, dict(num_warps=warps, num_stages=2)
    yield _row_dot_kernel, row_dot_consts(v.shape[-1], den=True), {}
    tiles = _chunked_cfg(q, v, chunk_size)
    for fn in (_la_bwd_states_kernel, _la_bwd_chunk_kernel, _la_bwd_chunk_dv_kernel):
        yield fn, *tiles[fn.__name__]


BACKWARDS = ("sequential", "chunked")


def _launch_fwd(q, k, v, eps, chunk_size):
    """q, k: (B, H, N, Dk), v: (B, H, N, Dv), contiguous, one dtype -> o: (B, H, N, Dv), den: (B, H, N) float32."""
    Bsz, H, n, dk = q.shape
    dv = v.shape[-1]
    BK, BV, BT, prec, warps = _cfg(q, v, chunk_size)
    o = torch.empty_like(v)
    den = torch.empty(Bsz, H, n, device=v.device, dtype=torch.float32)
    grid = (cdiv(dv, BV), Bsz * H)
    launch(_la_fwd_kernel, grid,
        q, k, v, o, den, n, float(eps), DK=dk, DV=dv, BT=BT, BK=BK, BV=BV, PREC=prec, num_warps=warps, num_stages=2,
    )  # fmt: skip
    return o, den


def _launch_bwd(q, k, v, do, o, den, chunk_size, backward):
    """q, k, v, o as in the forward, do in v's dtype, den: (B, H, N) float32, all contiguous -> dq, dk, dv in v's
    dtype, shaped as q, k, v."""
    dden = row_dot(do, o, den)  # -(do . o) / den
    if backward == "chunked":
        return _launch_bwd_chunked(q, k, v, do, den, dden, chunk_size)
    Bsz, H, n, dk = q.shape
    dv = v.shape[-1]
    BK, BV, BT, prec, warps = _cfg(q, v, chunk_size)
    nv = cdiv(dv, BV)
    dq = torch.empty(nv, Bsz, H, n, dk, device=q.device, dtype=torch.float32)
    dk_ = torch.empty_like(dq)
    dv_ = torch.empty_like(v)
    meta = dict(DK=dk, DV=dv, BT=BT, BK=BK, BV=BV, PREC=prec, num_warps=warps, num_stages=2)
    grid = (nv, Bsz * H)
    launch(_la_bwd_dq_kernel, grid, q, k, v, do, den, dden, dq, n, **meta)
    launch(_la_bwd_dkv_kernel, grid, q, k, v, do, den, dden, dk_, dv_, n, **meta)
    dq = dq.sum(0) if nv > 1 else dq[0]
    dk_ = dk_.sum(0) if nv > 1 else dk_[0]
    return dq.to(q.dtype), dk_.to(k.dtype), dv_


def _launch_bwd_chunked(q, k, v, do, den, dden, chunk_size):
    """The chunk-parallel backward: one pass storing the chunk states, then dq/dk and dv per chunk, each
    written once in the input dtype (no partial sums)."""
    Bsz, H, n, dk = q.shape
    dv = v.shape[-1]
    bh = Bsz * H
    tiles = _chunked_cfg(q, v, chunk_size)
    st, st_opts = tiles["_la_bwd_states_kernel"]
    qk, qk_opts = tiles["_la_bwd_chunk_kernel"]
    vv, vv_opts = tiles["_la_bwd_chunk_dv_kernel"]
    assert st["BT"] == qk["BT"] == vv["BT"], "the three kernels index the same chunk states"
    nc = cdiv(n, st["BT"])
    states = torch.empty(2, bh, nc, dk, dv, device=v.device, dtype=v.dtype)
    zs = torch.empty(2, bh, nc, dk, device=v.device, dtype=torch.float32)
    dq, dk_, dv_ = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    launch(_la_bwd_states_kernel, (cdiv(dv, st["BV"]), bh, 2), q, k, v, do, den, dden, states, zs, n, **st, **st_opts)
    launch(_la_bwd_chunk_kernel, (cdiv(dk, qk["BK"]), nc, bh),
        q, k, v, do, den, dden, states, zs, dq, dk_, n, **qk, **qk_opts,
    )  # fmt: skip
    launch(_la_bwd_chunk_dv_kernel, (cdiv(dv, vv["BV"]), nc, bh), q, k, do, den, states, dv_, n, **vv, **vv_opts)
    return dq, dk_, dv_


# Custom ops: torch.compile sees each launch as one opaque op (fake impls give the output metadata).


@torch.library.custom_op("phasebench::linear_attn_fwd", mutates_args=())
def _la_fwd_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float, chunk_size: int, backward: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k: (B, H, N, Dk), v: (B, H, N, Dv), contiguous, one dtype -> o: (B, H, N, Dv), den: (B, H, N) float32.
    backward only picks the autograd formula's kernels."""
    return _launch_fwd(q, k, v, eps, chunk_size)


@_la_fwd_op.register_fake
def _(q, k, v, eps, chunk_size, backward):
    return torch.empty_like(v), v.new_empty(v.shape[:-1], dtype=torch.float32)


@torch.library.custom_op("phasebench::linear_attn_bwd", mutates_args=())
def _la_bwd_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    do: torch.Tensor,
    o: torch.Tensor,
    den: torch.Tensor,
    chunk_size: int,
    backward: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """_launch_bwd: (q, k, v, do, o, den) -> (dq, dk, dv)."""
    return _launch_bwd(q, k, v, do, o, den, chunk_size, backward)


@_la_bwd_op.register_fake
def _(q, k, v, do, o, den, chunk_size, backward):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _la_setup_context(ctx, inputs, output):
    q, k, v, _, chunk_size, backward = inputs
    o, den = output
    ctx.save_for_backward(q, k, v, o, den)
    ctx.opts = (chunk_size, backward)
    ctx.mark_non_differentiable(den)
    ctx.set_materialize_grads(False)  # den's gradient stays None: no zeros kernel in backward


def _la_backward(ctx, bwd, do, _):
    q, k, v, o, den = ctx.saved_tensors
    dq, dk, dv = bwd(q, k, v, do.to(v.dtype).contiguous(), o, den, *ctx.opts)
    return dq, dk, dv, None, None, None


_linear_attn = differentiable_op(_la_fwd_op, _la_bwd_op, _la_setup_context, _la_backward)


def causal_linear_attn_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    eps: float = 1e-6,
    chunk_size: int = 64,
    backward: str = "chunked",
) -> torch.Tensor:
    """q, k: (B, H, N, Dk), v: (B, H, N, Dv) -> o: (B, H, N, Dv) in v's dtype.

    chunk_size is rounded up to a power of two >= 16 (tensor-core tile; float32: at most 32). backward:
    "chunked" (stored chunk states, chunks in parallel; its own chunk is chunk_size capped at 64; the
    default, 5 % faster fwd+bwd than "sequential" on the H200 at (8, 16, 4K-16K, 128) bf16) or "sequential"
    (two kernels carrying the state through the chunks).
    """
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if q.shape[-2] == 0:
        return v.new_zeros(v.shape)
    dt = v.dtype
    q, k, v = q.to(dt).contiguous(), k.to(dt).contiguous(), v.contiguous()
    return _linear_attn(q, k, v, float(eps), int(chunk_size), backward)[0]
