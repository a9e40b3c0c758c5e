"""Pipelined Triton BK-Core (float32): each pass of the two-pass scan in one launch, unit after unit.

Same math and outputs as kernels/bk_core/triton.py's `_sweep` (see there). A unit is one channel block of one
batch row. The launch's programs take tickets from an atomic counter; a ticket names a role and a unit:
  map    (S-1 a unit)  the Mobius product of one segment (`_segment_product_prefetched`), stored to PM;
  carry  (BLOCK_C / CB a unit)  waits until the unit's maps are all stored, then scans them for CB channels
         (`_seg_carries`) into W, the g entering each segment;
  sweep  (S a unit)  waits until the unit's carries are all stored, then sweeps its segment from its carry.
Tickets run unit by unit: the maps and carries of unit u, then the sweeps of unit u - LAG. The sweeps of a
unit thus read v soon after its maps read it, while it is still in L2 (the two-pass launches read all of v
twice from DRAM: the whole input lies between a segment's two reads).

A waiting program only waits on programs with smaller tickets, which are running or done (a ticket is taken
by a running program), so the launch cannot deadlock however the GPU schedules it. Publishing: stores, a
barrier, then a release atomic on the unit's counter; reading: an acquire atomic, then volatile loads (from
L2, never a stale L1 line). Under TRITON_INTERPRET=1 programs run one after another in ticket order and no
wait ever spins.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.bk_core.triton import (
    ADJ_SEG_MAXNREG,
    _adj_carries,
    _adj_resweep_rows,
    _adj_segment_prefetched,
    _channel_params,
    _plan,
    _seg_carries,
    _segment_product_prefetched,
    _segment_value,
    _store_mat,
    _store_param_grads,
    _sweep_rows_prefetched,
)
from kernels.grid import next_power_of_2


# ----------------------------------------------------------------------------------------------- helpers
@triton.jit
def _ticket(t, M, K, S, U, LAG):
    """Ticket t -> (unit, role, index): role 0 a map (index: segment), 1 a carry (index: channel group), 2 a sweep
    (index: segment). Step j holds the maps and carries of unit j (j < U) and the sweeps of unit j - LAG."""
    ak = M + K
    head = LAG * ak
    mid = (U - LAG) * (ak + S)
    if t < head:
        unit = t // ak
        r = t % ak
    elif t < head + mid:
        t2 = t - head
        step = LAG + t2 // (ak + S)
        r = t2 % (ak + S)
        unit = tl.where(r < ak, step, step - LAG)
    else:
        t3 = t - head - mid
        unit = U - LAG + t3 // S
        r = ak + t3 % S
    role = (r >= M).to(tl.int32) + (r >= ak).to(tl.int32)
    index = tl.where(role == 0, r, tl.where(role == 1, r - M, r - ak))
    return unit, role, index


@triton.jit
def _signal(counter):
    """One more program of the unit is done: every thread's stores first (barrier), then a release atomic."""
    tl.debug_barrier()
    tl.atomic_add(counter, 1, sem="release")


@triton.jit
def _wait(counter, count):
    """Spin until the counter reaches count (acquire)."""
    seen = tl.atomic_add(counter, 0, sem="acquire")
    while seen < count:
        seen = tl.atomic_add(counter, 0, sem="acquire")


# ----------------------------------------------------------------------------------------------- kernels
@triton.jit
def _pipe_sweep_kernel(V, H0, BETA, ZRE, ZIM, PM, W, GR, GI, STATE, N, C, L, S, n_cblk, U, LAG, REVERSE: tl.constexpr,
                       BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, CB: tl.constexpr):  # fmt: skip
    """GR, GI (B, N, C) and W (B, S, 2, C) as `_sweep`'s; PM (B, S, 8, C) scratch; STATE (1 + 2U,) int32 zeros:
    the ticket counter, each unit's maps stored, each unit's carry groups stored."""
    t = tl.atomic_add(STATE, 1)
    unit, role, index = _ticket(t, S - 1, BLOCK_C // CB, S, U, LAG)
    b = unit // n_cblk
    c0 = (unit % n_cblk) * BLOCK_C
    maps = STATE + 1 + unit
    carries = STATE + 1 + U + unit
    if role == 1:
        _wait(maps, S - 1)
        group = c0 + index * CB + tl.arange(0, CB)
        _seg_carries(PM, W, b, group, group < C, C, S, BLOCK_S, True)
        _signal(carries)
    else:
        cols = c0 + tl.arange(0, BLOCK_C)
        cmask = cols < C
        ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
        start = index * L
        end = tl.minimum(start + L, N)
        bn = b.to(tl.int64) * N * C
        if role == 0:
            p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _segment_product_prefetched(
                V + bn, cols, start, end, cmask, ar0, ai, b2, N, C, REVERSE, BLOCK_C
            )
            out = PM + (b.to(tl.int64) * S + index) * 8 * C + cols
            _store_mat(out, C, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i)
            _signal(maps)
        else:
            _wait(carries, BLOCK_C // CB)
            w = W + (b.to(tl.int64) * S + index) * 2 * C + cols
            gr = tl.load(w, mask=cmask, other=0.0, volatile=True)
            gi = tl.load(w + C, mask=cmask, other=0.0, volatile=True)
            _sweep_rows_prefetched(V + bn, GR + bn, GI + bn, cols, gr, gi, start, end, cmask, ar0, ai, b2, N, C,
                                   REVERSE)  # fmt: skip


@triton.jit
def _pipe_adjoint_kernel(V, H0, BETA, ZRE, ZIM, W, GR, GI, DGR, DGI, AM, MU, DV, RED, STATE, N, C, L, S, n_cblk, U,
                         LAG, REVERSE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
                         CB: tl.constexpr):  # fmt: skip
    """DV (B, N, C) and RED (B, S, 4, C) as `_adjoint`'s kernels write them, W the forward's carry; AM (B, S, 4, C),
    MU (B, S, 2, C) scratch; STATE as `_pipe_sweep_kernel`'s. The first passes take segments 1 .. S-1."""
    t = tl.atomic_add(STATE, 1)
    unit, role, index = _ticket(t, S - 1, BLOCK_C // CB, S, U, LAG)
    b = unit // n_cblk
    c0 = (unit % n_cblk) * BLOCK_C
    firsts = STATE + 1 + unit
    carries = STATE + 1 + U + unit
    if role == 1:
        _wait(firsts, S - 1)
        group = c0 + index * CB + tl.arange(0, CB)
        _adj_carries(AM, MU, b, group, group < C, C, S, BLOCK_S, True)
        _signal(carries)
    else:
        cols = c0 + tl.arange(0, BLOCK_C)
        cmask = cols < C
        ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
        s = index + 1 - role // 2  # first passes: segment index + 1
        start = s * L
        end = tl.minimum(start + L, N)
        bn = b.to(tl.int64) * N * C
        wr, wi = _segment_value(W, b, s, S, C, cols, cmask)
        if role == 0:
            pcr, pci, dcr, dci = _adj_segment_prefetched(
                V + bn, DGR + bn, DGI + bn, cols, start, end, cmask, ar0, ai, b2, wr, wi, N, C, REVERSE, BLOCK_C
            )
            out = AM + (b.to(tl.int64) * S + s) * 4 * C + cols
            tl.store(out, pcr, mask=cmask)
            tl.store(out + C, pci, mask=cmask)
            tl.store(out + 2 * C, dcr, mask=cmask)
            tl.store(out + 3 * C, dci, mask=cmask)
            _signal(firsts)
        else:
            _wait(carries, BLOCK_C // CB)
            mu = MU + (b.to(tl.int64) * S + s) * 2 * C + cols
            mr = tl.load(mu, mask=cmask, other=0.0, volatile=True)
            mi = tl.load(mu + C, mask=cmask, other=0.0, volatile=True)
            beta = tl.load(BETA + cols, mask=cmask, other=0.0)
            acc_r, acc_i, acc_b = _adj_resweep_rows(
                V + bn, GR + bn, GI + bn, DGR + bn, DGI + bn, DV + bn, cols, mr, mi, wr, wi, start, end, cmask, ar0,
                ai, b2, N, C, REVERSE, BLOCK_C,
            )  # fmt: skip
            _store_param_grads(RED + (b.to(tl.int64) * S + s) * 4 * C + cols, C, cmask, beta, acc_r, acc_i, acc_b)


# ----------------------------------------------------------------------------------------------- launchers
def pipe_sweep(v, h0, beta, z_re, z_im, reverse: bool, chunk=None, lag: int = 1, carry_channels: int = 1):
    """As `_sweep` of kernels/bk_core/triton.py, in one launch: (g_re, g_im) (B, N, C), carry (B, S, 2, C)."""
    B, N, C = v.shape
    block_c, n_cblk, L, S = _plan(B, N, C, chunk)
    units = B * n_cblk
    lag = max(1, min(lag, units))
    cb = min(carry_channels, block_c)
    state = torch.zeros(1 + 2 * units, device=v.device, dtype=torch.int32)
    pm = torch.empty(B, S, 8, C, device=v.device, dtype=torch.float32)
    w = torch.empty(B, S, 2, C, device=v.device, dtype=torch.float32)
    g_re, g_im = torch.empty_like(v), torch.empty_like(v)
    tickets = units * (S - 1 + block_c // cb + S)
    _pipe_sweep_kernel[(tickets,)](
        v, h0, beta, z_re, z_im, pm, w, g_re, g_im, state, N, C, L, S, n_cblk, units, lag, REVERSE=reverse,
        BLOCK_C=block_c, BLOCK_S=max(2, next_power_of_2(S)), CB=cb, num_warps=max(1, block_c // 32),
    )  # fmt: skip
    return g_re, g_im, w


def pipe_adjoint(
    v,
    h0,
    beta,
    z_re,
    z_im,
    carry,
    g_re,
    g_im,
    dg_re,
    dg_im,
    reverse: bool,
    chunk=None,
    lag: int = 1,
    carry_channels: int = 1,
    maxnreg: int | None = ADJ_SEG_MAXNREG,
):
    """As `_adjoint` of kernels/bk_core/triton.py, in one launch: dv (B, N, C), grads (4, C)."""
    B, N, C = g_re.shape
    block_c, n_cblk, L, S = _plan(B, N, C, chunk)
    units = B * n_cblk
    lag = max(1, min(lag, units))
    cb = min(carry_channels, block_c)
    state = torch.zeros(1 + 2 * units, device=v.device, dtype=torch.int32)
    am = torch.empty(B, S, 4, C, device=v.device, dtype=torch.float32)
    mu = torch.empty(B, S, 2, C, device=v.device, dtype=torch.float32)
    dv = torch.empty_like(g_re)
    red = torch.empty(B, S, 4, C, device=v.device, dtype=torch.float32)
    tickets = units * (S - 1 + block_c // cb + S)
    launch = dict(num_warps=max(1, block_c // 32)) | (dict(maxnreg=maxnreg) if maxnreg else {})
    _pipe_adjoint_kernel[(tickets,)](
        v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, am, mu, dv, red, state, N, C, L, S, n_cblk, units,
        lag, REVERSE=reverse, BLOCK_C=block_c, BLOCK_S=max(2, next_power_of_2(S)), CB=cb, **launch,
    )  # fmt: skip
    return dv, red.sum(dim=(0, 1))


__all__ = ["pipe_sweep", "pipe_adjoint"]
