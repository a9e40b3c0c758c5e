"""Triton diagonal linear scan h_t = a_t * h_{t-1} + b_t over the last dim of (B, C, N) tensors.

Each program owns BLOCK_R rows (a row is one (batch, channel) sequence) and walks the sequence tile by
tile, BLOCK_T positions each: an in-tile `tl.associative_scan` of the affine maps (a, b), then the carry
from the previous tile. Positions inside a tile always ascend, so loads and stores stay contiguous; a
scan that runs from the end visits the tiles last to first and scans each with `reverse=True`.

Backward (forward direction; the reverse direction mirrors it):
    g_t = dh_t + a_{t+1} g_{t+1}   (a scan in the opposite direction, coefficient a shifted by one)
    db_t = g_t,  da_t = g_t * h_{t-1}

The launches are the custom ops phasebench::diag_scan_fwd / diag_scan_bwd (fake impls, autograd registered),
so torch.compile sees each as one opaque op; broadcasting and reshaping stay in plain PyTorch.
"""

from __future__ import annotations

import inspect

import torch
import triton
import triton.language as tl

from kernels.backend import triton_interpreted
from kernels.custom_op import differentiable_op
from kernels.grid import cdiv, next_power_of_2
from kernels.launch import launch


@triton.jit
def _affine_combine(a_l, b_l, a_r, b_r):
    # apply (a_l, b_l) first, then (a_r, b_r): h -> a_r (a_l h + b_l) + b_r
    return a_l * a_r, a_r * b_l + b_r


@triton.jit
def _tile_start(i, n_tiles, FROM_END: tl.constexpr, BLOCK_T: tl.constexpr):
    """First position of the i-th tile visited; FROM_END visits the tiles last to first."""
    if FROM_END:
        return (n_tiles - 1 - i) * BLOCK_T
    return i * BLOCK_T


@triton.jit
def _tile_scan(coef, x, carry, cols, FROM_END: tl.constexpr, BLOCK_T: tl.constexpr):
    """y = scan of y_t = coef_t y_{t-1} + x_t along axis 1 (from the end when FROM_END), entered with
    `carry`. coef, x: (BLOCK_R, BLOCK_T); carry: (BLOCK_R,). -> (y, carry for the next tile)."""
    if FROM_END:
        c_c, x_c = tl.associative_scan((coef, x), axis=1, combine_fn=_affine_combine, reverse=True)
        y = x_c + c_c * carry[:, None]
        nxt = tl.sum(tl.where((cols == 0)[None, :], y, 0.0), axis=1)
    else:
        c_c, x_c = tl.associative_scan((coef, x), axis=1, combine_fn=_affine_combine)
        y = x_c + c_c * carry[:, None]
        nxt = tl.sum(tl.where((cols == BLOCK_T - 1)[None, :], y, 0.0), axis=1)
    return y, nxt


@triton.jit
def _program_rows(N, n_rows, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    """This program's BLOCK_R rows -> their mask, their offsets (BLOCK_R, 1) int64, the tile's columns, the tile
    count and a zero carry (BLOCK_R,) float32."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < n_rows
    base = rows.to(tl.int64)[:, None] * N
    return rmask, base, tl.arange(0, BLOCK_T), tl.cdiv(N, BLOCK_T), tl.zeros([BLOCK_R], dtype=tl.float32)


@triton.jit
def _scan_fwd_kernel(A, Bv, H, N, n_rows, REVERSE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    """A, Bv, H: (n_rows, N) contiguous. H = scan(A, Bv), from the end when REVERSE."""
    rmask, base, cols, n_tiles, carry = _program_rows(N, n_rows, BLOCK_R, BLOCK_T)
    for i in range(0, n_tiles):
        pos = _tile_start(i, n_tiles, REVERSE, BLOCK_T) + cols
        m = rmask[:, None] & (pos < N)[None, :]
        offs = base + pos[None, :]
        a = tl.load(A + offs, mask=m, other=1.0).to(tl.float32)  # padding is the identity map
        b = tl.load(Bv + offs, mask=m, other=0.0).to(tl.float32)
        h, carry = _tile_scan(a, b, carry, cols, REVERSE, BLOCK_T)
        tl.store(H + offs, h.to(H.dtype.element_ty), mask=m)


@triton.jit
def _scan_bwd_kernel(A, H, DH, DA, DB, N, n_rows, REVERSE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    """Adjoint of _scan_fwd_kernel(REVERSE): runs in the opposite direction.

    A, H, DH, DA, DB: (n_rows, N) contiguous. g_pos = DH_pos + A_{pos+S} g_{pos+S}, DB = g,
    DA_pos = g_pos * H_{pos-S}, with S = +1 for a forward scan and -1 for a reverse one.
    """
    rmask, base, cols, n_tiles, carry = _program_rows(N, n_rows, BLOCK_R, BLOCK_T)
    step = -1 if REVERSE else 1
    for i in range(0, n_tiles):
        pos = _tile_start(i, n_tiles, not REVERSE, BLOCK_T) + cols
        nxt = pos + step
        prv = pos - step
        tmask = pos < N
        m = rmask[:, None] & tmask[None, :]
        offs = base + pos[None, :]
        m_nxt = rmask[:, None] & (tmask & (nxt >= 0) & (nxt < N))[None, :]
        m_prv = rmask[:, None] & (tmask & (prv >= 0) & (prv < N))[None, :]
        coef = tl.load(A + base + nxt[None, :], mask=m_nxt, other=0.0).to(tl.float32)
        dh = tl.load(DH + offs, mask=m, other=0.0).to(tl.float32)
        h_prev = tl.load(H + base + prv[None, :], mask=m_prv, other=0.0).to(tl.float32)
        g, carry = _tile_scan(coef, dh, carry, cols, not REVERSE, BLOCK_T)
        tl.store(DB + offs, g.to(DB.dtype.element_ty), mask=m)
        tl.store(DA + offs, (g * h_prev).to(DA.dtype.element_ty), mask=m)


_CONFIGS = [
    triton.Config({"BLOCK_R": r, "BLOCK_T": t}, num_warps=w)
    for r, t, w in [(2, 512, 4), (4, 256, 4), (8, 256, 8), (4, 1024, 8)]
]
# Every run is a fresh process: the tuned blocks persist in Triton's cache directory (TRITON_CACHE_DIR, by
# default ~/.triton/cache), keyed by triton, the GPU's arch, the kernel source, the configs and the key's values
# with the tensors' dtypes. Triton < 3.4 has no cache_results and tunes in each process.
_CACHE_RESULTS = {"cache_results": True} if "cache_results" in inspect.signature(triton.autotune).parameters else {}
_autotune = triton.autotune(_CONFIGS, key=["N", "REVERSE"], **_CACHE_RESULTS)
_scan_fwd_tuned = None if triton_interpreted() else _autotune(_scan_fwd_kernel)
_scan_bwd_tuned = None if triton_interpreted() else _autotune(_scan_bwd_kernel)


#: rows a program takes where no tuned blocks run (the interpreter, or a caller's block_t alone): under the
#: interpreter an operation costs about the same at any width, so a wide block of rows runs in few programs
UNTUNED_BLOCK_R = 64 if triton_interpreted() else 4


def _blocks(n: int, block_t: int | None, block_r: int | None) -> tuple[int, int]:
    bt = block_t or min(256, next_power_of_2(max(n, 1)))
    return bt, block_r or UNTUNED_BLOCK_R


def _tuned_grid(n_rows: int):
    return lambda meta: (cdiv(n_rows, meta["BLOCK_R"]),)


def _launch_fwd(a, b, reverse, block_t=None, block_r=None):
    n_rows, n = a.shape
    h = torch.empty_like(b)
    if block_t is None and block_r is None and _scan_fwd_tuned is not None:
        launch(_scan_fwd_tuned, _tuned_grid(n_rows), a, b, h, n, n_rows, REVERSE=reverse)
    else:
        bt, br = _blocks(n, block_t, block_r)
        launch(_scan_fwd_kernel, (cdiv(n_rows, br),), a, b, h, n, n_rows, REVERSE=reverse, BLOCK_R=br, BLOCK_T=bt)
    return h


def _launch_bwd(a, h, dh, reverse, block_t=None, block_r=None):
    n_rows, n = a.shape
    da = torch.empty_like(a)
    db = torch.empty_like(h)
    if block_t is None and block_r is None and _scan_bwd_tuned is not None:
        launch(_scan_bwd_tuned, _tuned_grid(n_rows), a, h, dh, da, db, n, n_rows, REVERSE=reverse)
    else:
        bt, br = _blocks(n, block_t, block_r)
        grid = (cdiv(n_rows, br),)
        launch(_scan_bwd_kernel, grid, a, h, dh, da, db, n, n_rows, REVERSE=reverse, BLOCK_R=br, BLOCK_T=bt)
    return da, db


@torch.library.custom_op("phasebench::diag_scan_fwd", mutates_args=())
def _scan_fwd_op(
    a: torch.Tensor, b: torch.Tensor, reverse: bool, block_t: int | None, block_r: int | None
) -> torch.Tensor:
    """a, b: (R, N) contiguous -> h: (R, N) in b's dtype."""
    return _launch_fwd(a, b, reverse, block_t, block_r)


@_scan_fwd_op.register_fake
def _(a, b, reverse, block_t, block_r):
    """Shapes only: h like b."""
    return torch.empty_like(b)


@torch.library.custom_op("phasebench::diag_scan_bwd", mutates_args=())
def _scan_bwd_op(
    a: torch.Tensor, h: torch.Tensor, dh: torch.Tensor, reverse: bool, block_t: int | None, block_r: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """a, h, dh: (R, N) contiguous -> (da in a's dtype, db in h's dtype): (R, N) each."""
    return _launch_bwd(a, h, dh, reverse, block_t, block_r)


@_scan_bwd_op.register_fake
def _(a, h, dh, reverse, block_t, block_r):
    """Shapes only: da like a, db like h."""
    return torch.empty_like(a), torch.empty_like(h)


def _scan_setup_context(ctx, inputs, output):
    """Saves a and h: (R, N) for the backward launch."""
    a, _, reverse, block_t, block_r = inputs
    ctx.save_for_backward(a, output)
    ctx.opts = (reverse, block_t, block_r)


def _scan_backward(ctx, bwd, dh):
    """dh: (R, N) -> (da, db, None, None, None); no double backward."""
    a, h = ctx.saved_tensors
    da, db = bwd(a, h, dh.contiguous(), *ctx.opts)
    return da, db, None, None, None


_scan = differentiable_op(_scan_fwd_op, _scan_bwd_op, _scan_setup_context, _scan_backward)


def diag_scan_triton(
    a: torch.Tensor, b: torch.Tensor, reverse: bool = False, block_t: int | None = None, block_r: int | None = None
) -> torch.Tensor:
    """a, b: (B, C, N) (broadcastable) -> h: (B, C, N) in b's dtype; fp32 accumulation.

    block_t / block_r force a tile (tests); by default the block sizes are autotuned on GPU (UNTUNED_BLOCK_R rows
    a program under the interpreter).
    """
    if a.shape[-1] == 0:
        return torch.broadcast_tensors(a, b)[1].clone()
    a_e, b_e = torch.broadcast_tensors(a, b)
    shape = a_e.shape
    n = shape[-1]
    h = _scan(a_e.reshape(-1, n).contiguous(), b_e.reshape(-1, n).contiguous(), bool(reverse), block_t, block_r)
    return h.view(shape)
