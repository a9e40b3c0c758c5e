"""Run 28: the window backward in one kernel that scores each pair once, with the forward's folded tiles.

The landed backward (kernels/window_attn/triton.py) is two kernels, dq per query block and dk/dv per key block,
and each scores every pair of the window with the whole chain (rsqrt, lg2, exp2, ~30 more operations): the
backward is 3.9x the forward (run 21c), the issue asks for 2.5x. Here, for a window W equal to the block side B
(W = 64 at 16-bit head dims up to 64, the models' and the benchmark's case), a query block [t0, t0 + B) sees
exactly one folded B x B tile (no band): entry (t, s) is the pair (t, s) where s <= t and (t, s - W) where s > t.
One program walks STRIP query blocks in order. For each it scores the tile once, then
- dq: as the dq kernel (sum_s g sigma_s y_s, its row sums), finished and stored through exp0's backward;
- dk/dv: the tile's near entries are the whole contribution of this block to key block i, its far entries the
  whole contribution to key block i - 1. Key block i - 1 already holds its near part (the previous step's, in
  registers): far + held is its complete dy, dv, which the program finishes (exp0's backward) and stores.
The first block of a strip drops its far part (key block b0 - 1 is the strip before's); a strip's last key block
gets its far part from the next strip's first query block, which the program scores again for that alone (a halo:
one far-only tile a strip). No atomics, no side buffers, no delta or key-row buffers: deterministic, one launch
(plus the launcher's sum of the programs' dc and dscale partials).

    TRITON_INTERPRET=1 python3 window_fused_run28.py check-cpu   # against the landed backward, float32 (CPU)
    python3 window_fused_run28.py check                          # the same on the GPU, bf16 and float32
    python3 window_fused_run28.py OUT.json [N,...] [STRIP,...]   # fwd+bwd from CUDA graphs vs landed vs flex
"""

import json
import os
import statistics
import sys

import torch
import triton
import triton.language as tl

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
from kernels.grid import cdiv  # noqa: E402
from kernels.poincare.triton import _exp0_bwd_rows  # noqa: E402
from kernels.window_attn import triton as W  # noqa: E402
from kernels.window_attn.naive import window_hyp_attn_ref  # noqa: E402
from kernels.window_attn.triton import (  # noqa: E402
    _ds,
    _fold_keys,
    _head_consts,
    _key_grad,
    _keys,
    _load,
    _partials,
    _pick_dot,
    _query_rows,
    _reload,
    _store,
)

sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "window-streams-run27b"))
from window_streams_run27b import grads, inputs  # noqa: E402  (run 27b's inputs and gradients)

landed = W._launch_bwd


@triton.jit
def _block_rows(X, DO, LSE, OUT, offs_m, N, c, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr,
                BDV: tl.constexpr):  # fmt: skip
    """A query block's x, |x|^2 and rho (broadcast as (B, 1) tiles), do, lse2 and delta = sum(do * o) (B, 1)."""
    x, a, rho, do, lse2 = _query_rows(X, DO, LSE, offs_m, N, c, D, DV, BD, BDV)
    delta = tl.sum(do.to(tl.float32) * _load(OUT, offs_m, N, DV, BDV).to(tl.float32), axis=1)
    return x, a[:, None], rho, do, lse2[:, None], delta[:, None]


@triton.jit
def _query_cols(X, DO, LSE, OUT, offs_t, N, c, D: tl.constexpr, DV: tl.constexpr, BD: tl.constexpr,
                BDV: tl.constexpr):  # fmt: skip
    """_block_rows with the per-query values as vectors (a key-major tile broadcasts them along its columns)."""
    x, a, rho, do, lse2 = _query_rows(X, DO, LSE, offs_t, N, c, D, DV, BD, BDV)
    delta = tl.sum(do.to(tl.float32) * _load(OUT, offs_t, N, DV, BDV).to(tl.float32), axis=1)
    return x, a, rho, do, lse2, delta


@triton.jit
def _finish_keys(DKo, kf, r, sg, dk, rk, offs_n, N, c, kappa, min_norm, D: tl.constexpr, BD: tl.constexpr):
    """Store a key block's complete dk through exp0's backward (as the dk/dv kernel's epilogue) -> its sum of
    y . dy, and exp0's dc."""
    dy = _key_grad(kf, r, kappa, sg, dk, rk)
    tkey = tl.sum(r * tl.sum(kf * dy, axis=1), axis=0)
    dkt, dck = _exp0_bwd_rows(kf, dy, c, min_norm)
    _store(DKo, offs_n, N, dkt, D, BD)
    return tkey, tl.sum(dck, axis=0)


@triton.jit
def _far_part(x, do, p, gr, h, near):
    """A tile's far entries' contribution to their key block (the keys W before the diagonal): sum_t g rho_t x_t,
    dv and sum_t g (rho_t + tau), key-major."""
    gf = tl.where(near, 0.0, gr)
    dk = tl.dot(tl.trans(gf).to(x.dtype), x)
    dv = tl.dot(tl.trans(tl.where(near, 0.0, p)).to(do.dtype), do)
    return dk, dv, tl.sum(gf + tl.where(near, 0.0, h), axis=0)


@triton.jit
def _head_rows(X, Q, K, DQo, DKo, V, DO, OUT, DVo, LSE, i_bh, N, D: tl.constexpr, DV: tl.constexpr):
    """Both fused kernels' pointers moved to head i_bh's rows."""
    row0 = i_bh.to(tl.int64) * N
    return (X + row0 * D, Q + row0 * D, K + row0 * D, DQo + row0 * D, DKo + row0 * D, V + row0 * DV,
            DO + row0 * DV, OUT + row0 * DV, DVo + row0 * DV, LSE + row0)  # fmt: skip


@triton.jit
def _window_bwd_fused_kernel(
    X,
    K,
    V,
    C,
    S,
    DO,
    LSE,
    OUT,
    Q,
    DQo,
    DKo,
    DVo,
    DSC,
    DC,
    N,
    H,
    WINDOW,
    umax,
    min_norm,
    D: tl.constexpr,
    DV: tl.constexpr,
    B: tl.constexpr,
    STRIP: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
    FAST: tl.constexpr,
):
    """X, Q, K, DQo, DKo: (BH, N, D); V, DO, OUT, DVo: (BH, N, DV); LSE: (BH, N); C, S: (H,); DSC, DC: (BH *
    n_strips,) partial sums. WINDOW == B. Grid (cdiv(cdiv(N, B), STRIP), BH)."""
    i_s = tl.program_id(0)
    i_bh = tl.program_id(1)
    X, Q, K, DQo, DKo, V, DO, OUT, DVo, LSE = _head_rows(X, Q, K, DQo, DKo, V, DO, OUT, DVo, LSE, i_bh, N, D, DV)
    c, sc, tmax, kk = _head_consts(C, S, i_bh % H, umax)
    kappa = -2.0 * sc * tl.sqrt(c)
    nb = tl.cdiv(N, B)
    b0 = i_s * STRIP
    b1 = tl.minimum(b0 + STRIP, nb)
    hdk = tl.zeros([B, BD], dtype=tl.float32)  # key block i's near part, held for the next step
    hdv = tl.zeros([B, BDV], dtype=tl.float32)
    hrk = tl.zeros([B], dtype=tl.float32)
    gacc = tl.zeros([B], dtype=tl.float32)  # sum ds log2(...) (dscale)
    t_all = 0.0  # x . dx and y . dy over the strip's rows
    tmap = 0.0  # dc of exp0's backwards
    for blk in range(b0, b1):
        t0 = blk * B
        offs = t0 + tl.arange(0, B)
        x, ra, rho, do, lse2, delta = _block_rows(X, DO, LSE, OUT, offs, N, c, D, DV, BD, BDV)
        rc = (c * rho)[:, None]
        k_n, r_n, b_n, sg_n, v_n = _keys(K, V, offs, N, c, min_norm, D, DV, BD, BDV, FAST)
        k_f, r_f, b_f, sg_f, v_f = _keys(K, V, offs - WINDOW, N, c, min_norm, D, DV, BD, BDV, FAST)
        near, valid = _fold_keys(offs, offs, t0, t0 + B, WINDOW, True)
        s = _pick_dot(near, x, k_n, k_f, PREC)
        dp = _pick_dot(near, do, v_n, v_f, PREC)
        sg = tl.where(near, sg_n[None, :], sg_f[None, :])
        r = tl.where(near, r_n[None, :], r_f[None, :])
        b = tl.where(near, b_n[None, :], b_f[None, :])
        p, dsl, g, h = _ds(s, dp, ra, rc, b, sg, lse2, delta, valid, kk, tmax, True, -2.0 * r)
        gacc += tl.sum(dsl, axis=1)
        gs = g * sg
        rq = tl.sum(gs + h, axis=1)
        gsr = gs * r
        acc = tl.dot(tl.where(near, gsr, 0.0).to(k_n.dtype), k_n, input_precision=PREC)
        acc = tl.dot(tl.where(near, 0.0, gsr).to(k_f.dtype), k_f, acc, input_precision=PREC)
        gr = g * rho[:, None]
        fdk, fdv, frk = hdk, hdv, hrk  # key block blk - 1: its near part, held; its far part is this tile's
        if blk > b0:
            edk, edv, erk = _far_part(x, do, p, gr, h, near)
            fdk += edk
            fdv += edv
            frk += erk
        gn = tl.where(near, gr, 0.0)
        hdk = tl.dot(tl.trans(gn).to(x.dtype), x, input_precision=PREC)
        hdv = tl.dot(tl.trans(tl.where(near, p, 0.0)).to(do.dtype), do, input_precision=PREC)
        hrk = tl.sum(gn + tl.where(near, h, 0.0), axis=0)
        if blk > b0:
            _store(DVo, offs - WINDOW, N, fdv, DV, BDV)
            tkey, dck = _finish_keys(
                DKo, k_f.to(tl.float32), r_f, sg_f, fdk, frk, offs - WINDOW, N, c, kappa, min_norm, D, BD
            )
            t_all += tkey
            tmap += dck
        xf = _reload(X, offs, N, D, BD)
        dx = (kappa * rho)[:, None] * (xf * rq[:, None] - acc)
        t_all += tl.sum(tl.sum(xf * dx, axis=1), axis=0)
        dq, dcq = _exp0_bwd_rows(_reload(Q, offs, N, D, BD), dx, c, min_norm)
        _store(DQo, offs, N, dq, D, BD)
        tmap += tl.sum(dcq, axis=0)
    # the strip's last key block, b1 - 1: its far part from query block b1 (the next strip's), scored again
    last = (b1 - 1) * B + tl.arange(0, B)
    k_l, r_l, b_l, sg_l, v_l = _keys(K, V, last, N, c, min_norm, D, DV, BD, BDV, FAST)
    if b1 < nb:
        offs = b1 * B + tl.arange(0, B)
        x, ra, rho, do, lse2, delta = _block_rows(X, DO, LSE, OUT, offs, N, c, D, DV, BD, BDV)
        near, valid = _fold_keys(offs, offs, b1 * B, b1 * B + B, WINDOW, True)
        s = tl.dot(x, tl.trans(k_l), input_precision=PREC)
        dp = tl.dot(do, tl.trans(v_l), input_precision=PREC)
        rc = (c * rho)[:, None]
        p, _dsl, g, h = _ds(
            s, dp, ra, rc, b_l[None, :], sg_l[None, :], lse2, delta, valid & ~near, kk, tmax, True,
            -2.0 * r_l[None, :],
        )  # fmt: skip
        fdk, fdv, frk = _far_part(x, do, p, g * rho[:, None], h, near)
        hdk += fdk
        hdv += fdv
        hrk += frk
    _store(DVo, last, N, hdv, DV, BDV)
    tkey, dck = _finish_keys(DKo, k_l.to(tl.float32), r_l, sg_l, hdk, hrk, last, N, c, kappa, min_norm, D, BD)
    t_all += tkey
    tmap += dck
    slot = i_bh * tl.num_programs(0) + i_s
    _partials(DSC + slot, DC + slot, gacc, t_all, c, sc, tmap)


@triton.jit
def _keymajor_tile(k, vb, kb, kc, km, x_n, x_f, do_n, do_f, a_n, a_f, rho_n, rho_f, lse_n, lse_f, del_n, del_f,
                   near, valid, kk, tmax, PREC: tl.constexpr):  # fmt: skip
    """A key-major folded tile (keys x queries: near queries, or the queries W later) -> p, g, h, dsl, rho."""
    s = _pick_dot(near, k, x_n, x_f, PREC)
    dp = _pick_dot(near, vb, do_n, do_f, PREC)
    rho = tl.where(near, rho_n[None, :], rho_f[None, :])
    a = tl.where(near, a_n[None, :], a_f[None, :])
    lse2 = tl.where(near, lse_n[None, :], lse_f[None, :])
    delta = tl.where(near, del_n[None, :], del_f[None, :])
    p, dsl, g, h = _ds(s, dp, kb, kc, a, rho, lse2, delta, valid, kk, tmax, True, km)
    return p, g, h, dsl, rho


@triton.jit
def _window_bwd_fused_keys_kernel(
    X,
    K,
    V,
    C,
    S,
    DO,
    LSE,
    OUT,
    Q,
    DQo,
    DKo,
    DVo,
    DSC,
    DC,
    N,
    H,
    WINDOW,
    umax,
    min_norm,
    D: tl.constexpr,
    DV: tl.constexpr,
    B: tl.constexpr,
    STRIP: tl.constexpr,
    BD: tl.constexpr,
    BDV: tl.constexpr,
    PREC: tl.constexpr,
    FAST: tl.constexpr,
):
    """As _window_bwd_fused_kernel, key-major: a program walks STRIP key blocks; step j scores key block j
    against its near queries (block j) folded with the queries W later (block j + 1). Key block j is complete
    in the step; query block j is complete with the far part held from step j - 1 (sum_s g sigma_s y_s and its
    row sums: one tile held, where the query-major walk holds dk and dv). A strip's first query block takes its
    far part from a halo tile (key block b0 - 1 scored again against it)."""
    i_s = tl.program_id(0)
    i_bh = tl.program_id(1)
    X, Q, K, DQo, DKo, V, DO, OUT, DVo, LSE = _head_rows(X, Q, K, DQo, DKo, V, DO, OUT, DVo, LSE, i_bh, N, D, DV)
    c, sc, tmax, kk = _head_consts(C, S, i_bh % H, umax)
    kappa = -2.0 * sc * tl.sqrt(c)
    nb = tl.cdiv(N, B)
    b0 = i_s * STRIP
    b1 = tl.minimum(b0 + STRIP, nb)
    cols = tl.arange(0, B)
    hacc = tl.zeros([B, BD], dtype=tl.float32)  # query block j's far part: sum_s g sigma_s r_s k_s
    hrq = tl.zeros([B], dtype=tl.float32)  # and sum_s g (sigma_s + tau)
    gsum = tl.zeros([B], dtype=tl.float32)  # sum ds log2(...) (dscale)
    t_all = 0.0
    tmap = 0.0
    if b0 > 0:  # the halo: key block b0 - 1 against query block b0 (its far queries)
        offs_n = (b0 - 1) * B + cols
        k, r, b, sg, vb = _keys(K, V, offs_n, N, c, min_norm, D, DV, BD, BDV, FAST)
        x, a, rho, do, lse2, delta = _query_cols(X, DO, LSE, OUT, offs_n + WINDOW, N, c, D, DV, BD, BDV)
        s = tl.dot(k, tl.trans(x), input_precision=PREC)
        dp = tl.dot(vb, tl.trans(do), input_precision=PREC)
        far = (cols[None, :] - cols[:, None]) < 0  # entry (s, t): the query t + W, in s's window where t < s
        _p, _dsl, g, h = _ds(
            s, dp, b[:, None], (c * sg)[:, None], a[None, :], rho[None, :], lse2[None, :], delta[None, :], far, kk,
            tmax, True, (-2.0 * r)[:, None],
        )  # fmt: skip
        gs = g * sg[:, None]
        hacc = tl.dot(tl.trans(gs * r[:, None]).to(k.dtype), k, input_precision=PREC)
        hrq = tl.sum(gs + h, axis=0)  # (their ds log2(...) the strip before counts)
    for j in range(b0, b1):
        k0 = j * B
        offs_n = k0 + cols
        k, r, b, sg, vb = _keys(K, V, offs_n, N, c, min_norm, D, DV, BD, BDV, FAST)
        x_n, a_n, rho_n, do_n, lse_n, del_n = _query_cols(X, DO, LSE, OUT, offs_n, N, c, D, DV, BD, BDV)
        x_f, a_f, rho_f, do_f, lse_f, del_f = _query_cols(X, DO, LSE, OUT, offs_n + WINDOW, N, c, D, DV, BD, BDV)
        e = offs_n[None, :] - offs_n[:, None]
        near = e >= 0
        p, g, h, dsl, rho = _keymajor_tile(
            k, vb, b[:, None], (c * sg)[:, None], (-2.0 * r)[:, None], x_n, x_f, do_n, do_f, a_n, a_f, rho_n, rho_f,
            lse_n, lse_f, del_n, del_f, near, near | (e < 0), kk, tmax, PREC,
        )  # fmt: skip
        gsum += tl.sum(dsl, axis=1)  # over queries: only the total counts
        dv = tl.dot(tl.where(near, p, 0.0).to(do_n.dtype), do_n, input_precision=PREC)
        dv = tl.dot(tl.where(near, 0.0, p).to(do_f.dtype), do_f, dv, input_precision=PREC)
        _store(DVo, offs_n, N, dv, DV, BDV)
        gr = g * rho
        rk = tl.sum(gr + h, axis=1)
        qh = g * sg[:, None] + h
        rq = hrq + tl.sum(tl.where(near, qh, 0.0), axis=0)  # query block j: its near part here, its far part held
        hrq = tl.sum(tl.where(near, 0.0, qh), axis=0)  # query block j + 1's far part, held
        dk = tl.dot(tl.where(near, gr, 0.0).to(x_n.dtype), x_n, input_precision=PREC)
        dk = tl.dot(tl.where(near, 0.0, gr).to(x_f.dtype), x_f, dk, input_precision=PREC)
        gsr = (g * (sg * r)[:, None]).to(k.dtype)
        acc = tl.dot(tl.trans(tl.where(near, gsr, 0.0)), k, hacc, input_precision=PREC)
        hacc = tl.dot(tl.trans(tl.where(near, 0.0, gsr)), k, input_precision=PREC)
        tkey, dck = _finish_keys(DKo, _reload(K, offs_n, N, D, BD), r, sg, dk, rk, offs_n, N, c, kappa, min_norm, D, BD)
        t_all += tkey
        tmap += dck
        xf = _reload(X, offs_n, N, D, BD)
        dx = (kappa * rho_n)[:, None] * (xf * rq[:, None] - acc)
        t_all += tl.sum(tl.sum(xf * dx, axis=1), axis=0)
        dq, dcq = _exp0_bwd_rows(_reload(Q, offs_n, N, D, BD), dx, c, min_norm)
        _store(DQo, offs_n, N, dq, D, BD)
        tmap += tl.sum(dcq, axis=0)
    slot = i_bh * tl.num_programs(0) + i_s
    _partials(DSC + slot, DC + slot, gsum, t_all, c, sc, tmap)


def fused(strip, keys=False):
    """A _launch_bwd for window == 64 (16-bit, head dim <= 64) or any window in {16, 32, 64} equal to B;
    `keys`: the key-major walk."""

    def launch(do, o, q, k, x, v, c32, s32, lse, window, block_m, block_n):
        Bsz, H, n, d = x.shape
        dv_ = v.shape[-1]
        BD, BDV, *_, prec = W._cfg(d, dv_, x.dtype, 0, None, None)
        fp32 = x.dtype == torch.float32
        nb = cdiv(n, window)
        grid = (cdiv(nb, strip), Bsz * H)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        parts = torch.empty(2, H, Bsz * grid[0], device=x.device, dtype=torch.float32)
        kernel = _window_bwd_fused_keys_kernel if keys else _window_bwd_fused_kernel
        cap = {"maxnreg": int(os.environ["FUSED_MAXNREG"])} if "FUSED_MAXNREG" in os.environ else {}
        kernel[grid](
            x, k, v, c32, s32, do, lse, o, q, dq, dk, dv, parts[1], parts[0], n, H, window, 1.0 - W.BALL_EPS,
            W.MIN_NORM, D=d, DV=dv_, B=window, STRIP=strip, BD=BD, BDV=BDV, PREC=prec, FAST=not fp32,
            num_warps=int(os.environ.get("FUSED_WARPS", 4)), num_stages=1, **cap,
        )  # fmt: skip
        # the slots are i_bh-major; the landed kernels' (H, B, PARTS) order only matters for the sum's order
        return dq, dk, dv, parts.view(2, Bsz, H, grid[0]).sum((1, 3))

    return launch


def rel_diff(a, b):
    return ((a.float() - b.float()).abs().max() / a.float().abs().max()).item()


def check(cases, device, dtype):
    from bench.tiles import swapped

    worst = 0.0
    for n, window, strip, h, d in cases:
        ins = inputs(n, B=2, H=h, D=d, device=device, dtype=dtype)
        fn = lambda: W.window_hyp_attn_triton(*ins, window)  # noqa: B023, E731
        ref = grads(ins, fn)
        found = {"landed": ref}
        for keys in (False, True):
            with swapped(W, "_launch_bwd", fused(strip, keys)):
                out = found["key-major" if keys else "query-major"] = grads(ins, fn)
            rel = [rel_diff(a, b) for a, b in zip(ref, out, strict=True)]
            worst = max(worst, *rel)
            print(f"N {n} W {window} strip {strip} D {d} {dtype} {'key' if keys else 'query'}-major: rel diff dq dk "
                  "dv dc dscale " + " ".join(f"{e:.2e}" for e in rel), flush=True)  # fmt: skip
        if dtype == torch.float32:  # each against the float64 reference, as tests/kernels/test_window_attn_triton.py
            ins64 = [t.detach().double().requires_grad_() for t in ins]
            g64 = grads(ins64, lambda: window_hyp_attn_ref(*ins64, window=window))  # noqa: B023
            for name, got in found.items():
                err = [
                    ((a.double() - b).abs().max() / max(1.0, b.abs().max().item())).item()
                    for a, b in zip(got, g64, strict=True)
                ]

                print(f"  {name} against float64: " + " ".join(f"{e:.2e}" for e in err), flush=True)
    return worst


if __name__ == "__main__":
    if sys.argv[1] == "check-cpu":  # TRITON_INTERPRET=1: float32, several strips, ragged ends, one-block strips
        cases = [(40, 16, 1, 2, 16), (45, 16, 2, 1, 16), (100, 16, 3, 2, 16), (130, 32, 2, 1, 16), (200, 64, 2, 1, 16),
                 (64, 64, 4, 1, 16), (17, 16, 1, 1, 32)]  # fmt: skip
        print(f"worst {check(cases, 'cpu', torch.float32):.2e}")
        sys.exit(0)
    if sys.argv[1] == "check":
        w32 = check([(1000, 64, 4, 4, 64), (2048, 64, 8, 4, 64), (300, 32, 3, 2, 32)], "cuda", torch.float32)
        w16 = check([(1000, 64, 4, 16, 64), (16384, 64, 8, 16, 64)], "cuda", torch.bfloat16)
        print(f"worst float32 {w32:.2e}, bf16 {w16:.2e}")
        sys.exit(0)
    from bench.kernels import FLEX_DOT, _fwd_bwd, window_flex_anchors
    from bench.tiles import _graph_ms, swapped

    sizes = [int(v) for v in sys.argv[2].split(",")] if len(sys.argv) > 2 else [2048, 4096, 16384]
    strips = [int(v) for v in sys.argv[3].split(",")] if len(sys.argv) > 3 else [4, 8, 16]
    rows = {}
    for n in sizes:
        ins = inputs(n)
        q, k, v, c, s = ins
        flex_fn, flex_ins = window_flex_anchors(q, k, v, c, s, 64)[FLEX_DOT]
        ours = _fwd_bwd(lambda: W.window_hyp_attn_triton(*ins, 64), ins)  # noqa: B023
        fwd = lambda: W.window_hyp_attn_triton(*ins, 64)  # noqa: B023, E731
        variants = {"landed": landed} | {f"fused strip {st}": fused(st) for st in strips}
        variants |= {f"fused keys strip {st}": fused(st, True) for st in strips}
        timers = {"flex_attention": _fwd_bwd(flex_fn, flex_ins)} | {name: ours for name in variants}
        times = {name: [] for name in timers} | {"forward": []}
        for _rnd in range(3):
            for name, fn in timers.items():
                with swapped(W, "_launch_bwd", variants.get(name, landed)):
                    times[name].append(_graph_ms(fn).get("ms"))
            with torch.no_grad():
                times["forward"].append(_graph_ms(fwd).get("ms"))
        med = {name: statistics.median(t) for name, t in times.items()}
        rows[n] = dict(ms=med, reps=times)
        print(f"N {n}: " + "  ".join(f"{k_} {ms:.4f} ({ms / med['flex_attention']:.3f}x)" for k_, ms in med.items()),
              flush=True)  # fmt: skip
        print("  backward / forward: " + "  ".join(
            f"{k_} {(med[k_] - med['forward']) / med['forward']:.2f}" for k_ in variants), flush=True)  # fmt: skip
    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT"))  # fmt: skip
    json.dump(dict(env=env, rows=rows), open(sys.argv[1], "w"), indent=1)
