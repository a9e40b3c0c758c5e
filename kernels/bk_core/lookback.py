"""One-pass Triton BK-Core (float32): one kernel per sweep and one per adjoint, by decoupled look-back.

Same math as kernels/bk_core/triton.py (see there), in one launch each instead of three:
  forward  g_i = 1/(a_i - b2 g_{i-1}), a = h0 + v - z, b2 = beta^2; segment s carries the Mobius product
           P_s = M_last ... M_first, M = [[0, 1], [-b2, a]] (rescaled every 4 rows), and g entering it is
           w_s = (P_{s-1} ... P_0)(0), P(w) = (p00 w + p01)/(p10 w + p11);
  backward mu_i = conj(g_i^2)(gbar_i + b2 mu_{i+1}) right to left; segment s carries the affine composite
           mu_first = Cc mu_next + Dc, and mu entering it from the right is the composite of the segments
           to its right applied to 0.
A program owns BLOCK_C channels of one batch row (one channel a thread) and one segment of L rows. It streams
its segment 4 rows a step through triton.py's 4-row loops (_segment_product, _adj_segment) to its aggregate
(P_s, or (Cc, Dc)) and publishes it, looks back over the segments before it (right of it for the adjoint),
LOOK of them a round: one acquire atomic per segment reads their flags together, the aggregates of those that
lead with an aggregate only are loaded together and combined in order, and a predecessor's inclusive value
(g leaving it, mu entering it) ends the walk; a predecessor that has published nothing yet starts the next
round (spun on). A walk over k aggregates takes about k / LOOK L2 round trips (atomics, then loads); reading
four at once did not pay on the H200 (LOOK below). It publishes its own inclusive value (its aggregate applied
to the carry) and sweeps its rows again from the carry (_sweep_rows, _adj_sweep_rows), reading them a second
time, writing g (or dv and per-segment sums as `_adj_sweep_kernel` does).

Segment order comes from a ticket (an atomic counter per (batch row, channel block)), not from
tl.program_id: the GPU does not start programs in index order, and a program spinning on a predecessor that
has not started could hold the slot that predecessor needs (deadlock). A ticket is taken by a running
program, so every smaller ticket belongs to a program that is running or done.

Publishing: every thread stores its channels' values, tl.debug_barrier(), then one release atomic sets the
segment's flag (0 nothing, 1 aggregate, 2 inclusive). Reading: an acquire atomic reads the flag, volatile
loads the values (from L2, never a stale L1 line). Under TRITON_INTERPRET=1 programs run one after another,
so the look-back always stops at its first predecessor there; tests walk longer chains by doctoring STATE.
Results are not bitwise reproducible on a GPU: where a walk stops depends on timing.

Held rows, timed against streamed ones on the H200 (run 14, (16, 16384, 64)): a program that kept its segment in
registers from the aggregate to the sweep (168 / 254 registers, rows unrolled) ran the forward in 0.107 ms and
the adjoint in 0.177, streamed ones (62 / 50 registers at one warp) 0.104 and 0.182; the held forward took
47-85 s to compile, the streamed kernels take ~1.5 s. Only the streamed kernels are kept.

Bytes per element, causal: forward reads v (4), writes g_re, g_im (8); backward reads g, dg (16), writes dv
(4): 32 in all (the two-pass kernels move 48). Scratch, per segment and channel when the walk stops at the
first predecessor: forward 40 written, 8 read per segment; backward 24 + 12 (sums) written, 8 read per
segment: ~1 byte per element more at the segments below. The sweep's second read of a segment stays in L2
only while the segments in flight fit there; with a program a segment they do not (~89 MB forward, ~177 MB
adjoint against 50 MB), so at (16, 16384, 64) the kernels move 16 and 36 bytes an element, about what the
two-pass ones do, at 72 % and 88 % of copy bandwidth on the H100 (run 18a: 0.125 and 0.229 ms). Fewer programs
in flight, each taking segment after segment so that the second read could hit L2, were slower at every count
(run 18a: 1056 / 528 / 264 programs 0.140 / 0.177 / 0.268 ms forward, 0.254 / 0.332 / 0.536 adjoint): with
fewer programs the serial segment chain's latency shows, so a program a segment stays.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.bk_core.triton import (
    _adj_segment,
    _adj_sweep_rows,
    _affine_combine,
    _bidirectional,
    _channel_params,
    _check_rows,
    _mat_combine,
    _segment_product,
    _store_mat,
    _store_param_grads,
    _sweep_rows,
)
from kernels.custom_op import differentiable_op
from kernels.grid import cdiv
from kernels.launch import launch

#: rows a program, forward and adjoint, and channels a program (one a thread: BLOCK_C // 32 warps). On the H200
#: (run 14, (16, 16384, 64), bench/tiles.py --op bk_core) the fastest: forward 128 rows 0.1035 ms (64: 0.1056,
#: 32: 0.1108), adjoint 64 rows 0.1817 (32: 0.1878, 16: 0.2105), 64 channels (32: 0.1077 / 0.1885)
SEG_FWD = 128
SEG_BWD = 64
BLOCK_C = 64
FWD_PART = 10  # forward scratch rows per (segment, channel): P_s (8), g leaving the segment (2)
BWD_PART = 6  # backward scratch rows: (Cc, Dc) (4), mu entering the segment from the right (2)
#: predecessors a look-back round reads at once. On the H200 (run 12b, (16, 16384, 64)) 1 is the fastest: forward
#: 0.108 ms against 0.167 with 4 (its 188 registers against 168), adjoint 0.178 ms either way
LOOK = 1


# ----------------------------------------------------------------------------------------------- helpers
@triton.jit
def _take(tile, idx, j: tl.constexpr):
    """Row j of a register tile (LOOK, BLOCK_C): a select and a sum over the rows."""
    return tl.sum(tl.where(idx[:, None] == j, tile, 0.0), axis=0)


@triton.jit
def _mobius(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, wr, wi):
    """P(w) = (p00 w + p01)/(p10 w + p11)."""
    nr = p00r * wr - p00i * wi + p01r
    ni = p00r * wi + p00i * wr + p01i
    dr = p10r * wr - p10i * wi + p11r
    di = p10r * wi + p10i * wr + p11i
    inv = 1.0 / (dr * dr + di * di)
    return (nr * dr + ni * di) * inv, (ni * dr - nr * di) * inv


@triton.jit
def _chain(STATE, C, S, BLOCK_C: tl.constexpr):
    """This program's batch row b, its channels (BLOCK_C,) and their mask, and its chain of STATE (ticket, flags)."""
    pid = tl.program_id(0)
    n_cblk = tl.cdiv(C, BLOCK_C)
    cols = (pid % n_cblk) * BLOCK_C + tl.arange(0, BLOCK_C)
    return pid // n_cblk, cols, cols < C, STATE + pid * (1 + S)


@triton.jit
def _peek(ptr, cmask, other: tl.constexpr):
    """A value another program published: a volatile load (from L2, never a stale L1 line)."""
    return tl.load(ptr, mask=cmask, other=other, volatile=True)


@triton.jit
def _round(chain, segs, valid, LOOK: tl.constexpr):
    """One look-back round over the segments `segs` (LOOK, nearest first; `valid` those that exist): their flags
    by one acquire atomic each -> n, how many lead with an aggregate only (flag 1), and the flag of segment
    segs[n] (2: its inclusive value ends the walk; 0, or n = LOOK: the walk goes on from there)."""
    look = tl.arange(0, LOOK)
    flags = tl.atomic_add(chain + 1 + segs, 0, sem="acquire", mask=valid)
    flags = tl.where(valid, flags, 0)
    n = tl.min(tl.where(flags == 1, LOOK, look), axis=0)
    return n, tl.sum(tl.where(look == n, flags, 0), axis=0)


@triton.jit
def _publish(flag_ptr, value: tl.constexpr):
    """Set a segment's flag once every thread's stores are done (barrier, then a release atomic)."""
    tl.debug_barrier()
    tl.atomic_xchg(flag_ptr, value, sem="release")


@triton.jit
def _g_entering(chain, PART, b, s, S, C, cols, cmask, BLOCK_C: tl.constexpr, LOOK: tl.constexpr):
    """g entering segment s (BLOCK_C,) by the look-back, LOOK segments a round: q = P_{s-1} ... P_{j+1} until segment
    j has published g leaving it; then w = q(g). A round combines the aggregates of segments j, j-1, ... up to the
    first without one (_round); PART (B, S, 10, C) as _lookback_fwd_kernel's."""
    one = tl.full([BLOCK_C], 1.0, tl.float32)
    zero = tl.zeros([BLOCK_C], tl.float32)
    q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i = one, zero, zero, zero, zero, zero, one, zero
    wr, wi = zero, zero
    look = tl.arange(0, LOOK)
    j = s - 1
    while j >= 0:
        segs = j - look  # nearest first
        n, stop = _round(chain, segs, segs >= 0, LOOK)
        prev = PART + (b.to(tl.int64) * S + segs)[:, None] * 10 * C + cols[None, :]
        m = (look < n)[:, None] & cmask[None, :]
        e00r, e00i = _peek(prev, m, 1.0), _peek(prev + C, m, 0.0)
        e01r, e01i = _peek(prev + 2 * C, m, 0.0), _peek(prev + 3 * C, m, 0.0)
        e10r, e10i = _peek(prev + 4 * C, m, 0.0), _peek(prev + 5 * C, m, 0.0)
        e11r, e11i = _peek(prev + 6 * C, m, 1.0), _peek(prev + 7 * C, m, 0.0)
        for k in tl.static_range(LOOK):  # identity past n
            q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i = _mat_combine(
                _take(e00r, look, k), _take(e00i, look, k), _take(e01r, look, k), _take(e01i, look, k),
                _take(e10r, look, k), _take(e10i, look, k), _take(e11r, look, k), _take(e11i, look, k),
                q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i,
            )  # fmt: skip
        if stop == 2:
            inc = PART + (b.to(tl.int64) * S + j - n) * 10 * C + cols
            hr, hi = _peek(inc + 8 * C, cmask, 0.0), _peek(inc + 9 * C, cmask, 0.0)  # g leaving segment j - n
            wr, wi = _mobius(q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i, hr, hi)
            j = -1
        else:
            j -= n
    return wr, wi


# ----------------------------------------------------------------------------------------------- kernels
@triton.jit(do_not_specialize=["C"])  # as timed (run 14)
def _lookback_fwd_kernel(
    V,
    H0,
    BETA,
    ZRE,
    ZIM,
    STATE,
    PART,
    GR,
    GI,
    N,
    C,
    S,
    REVERSE: tl.constexpr,
    L: tl.constexpr,
    BLOCK_C: tl.constexpr,
    LOOK: tl.constexpr,
):
    """GR, GI (B, N, C); STATE (B * n_cblk, 1 + S) int32: ticket, flag of each segment; PART (B, S, 10, C)."""
    b, cols, cmask, chain = _chain(STATE, C, S, BLOCK_C)
    s = tl.atomic_add(chain, 1)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    bn = b.to(tl.int64) * N * C
    start = s * L
    end = tl.minimum(start + L, N)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _segment_product(
        V + bn, cols, start, end, cmask, ar0, ai, b2, N, C, REVERSE, BLOCK_C
    )
    part = PART + (b.to(tl.int64) * S + s) * 10 * C + cols
    if s > 0:
        _store_mat(part, C, cmask, p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i)
        _publish(chain + 1 + s, 1)
    wr, wi = _g_entering(chain, PART, b, s, S, C, cols, cmask, BLOCK_C, LOOK)
    er, ei = _mobius(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, wr, wi)
    tl.store(part + 8 * C, er, mask=cmask)
    tl.store(part + 9 * C, ei, mask=cmask)
    _publish(chain + 1 + s, 2)
    _sweep_rows(V + bn, GR + bn, GI + bn, cols, wr, wi, start, end, cmask, ar0, ai, b2, N, C, REVERSE)


@triton.jit(do_not_specialize=["C"])
def _lookback_bwd_kernel(
    GR,
    GI,
    DGR,
    DGI,
    BETA,
    STATE,
    PART,
    DV,
    RED,
    N,
    C,
    S,
    REVERSE: tl.constexpr,
    L: tl.constexpr,
    BLOCK_C: tl.constexpr,
    LOOK: tl.constexpr,
):
    """DV (B, N, C) = -Re mu; RED (4, C, B S) as _adj_sweep_kernel; STATE as the forward's (tickets run from the
    last segment); PART (B, S, 6, C)."""
    b, cols, cmask, chain = _chain(STATE, C, S, BLOCK_C)
    s = S - 1 - tl.atomic_add(chain, 1)
    beta = tl.load(BETA + cols, mask=cmask, other=0.0)
    b2 = beta * beta
    bn = b.to(tl.int64) * N * C
    GR += bn
    GI += bn
    DGR += bn
    DGI += bn
    DV += bn
    start = s * L
    end = tl.minimum(start + L, N)
    zero = tl.zeros([BLOCK_C], tl.float32)
    pcr, pci, dcr, dci = _adj_segment(GR, GI, DGR, DGI, cols, start, end, cmask, b2, N, C, REVERSE, BLOCK_C)
    part = PART + (b.to(tl.int64) * S + s) * 6 * C + cols
    if s < S - 1:
        tl.store(part, pcr, mask=cmask)
        tl.store(part + C, pci, mask=cmask)
        tl.store(part + 2 * C, dcr, mask=cmask)
        tl.store(part + 3 * C, dci, mask=cmask)
        _publish(chain + 1 + s, 1)
    # look-back to the right, LOOK segments a round (_round): x -> qc x + qd composes segments s+1 .. j-1 until
    # segment j has published mu entering it; then mu entering segment s is qc mu + qd
    qcr = tl.full([BLOCK_C], 1.0, tl.float32)
    qci, qdr, qdi = zero, zero, zero
    mr, mi = zero, zero
    look = tl.arange(0, LOOK)
    j = s + 1
    while j < S:
        segs = j + look  # nearest first
        n, stop = _round(chain, segs, segs < S, LOOK)
        prev = PART + (b.to(tl.int64) * S + segs)[:, None] * 6 * C + cols[None, :]
        m = (look < n)[:, None] & cmask[None, :]
        ecr, eci = _peek(prev, m, 1.0), _peek(prev + C, m, 0.0)
        edr, edi = _peek(prev + 2 * C, m, 0.0), _peek(prev + 3 * C, m, 0.0)
        for k in tl.static_range(LOOK):  # identity past n
            qcr, qci, qdr, qdi = _affine_combine(
                _take(ecr, look, k), _take(eci, look, k), _take(edr, look, k), _take(edi, look, k), qcr, qci, qdr, qdi
            )
        if stop == 2:
            inc = PART + (b.to(tl.int64) * S + j + n) * 6 * C + cols
            er, ei = _peek(inc + 4 * C, cmask, 0.0), _peek(inc + 5 * C, cmask, 0.0)
            mr = qcr * er - qci * ei + qdr
            mi = qcr * ei + qci * er + qdi
            j = S
        else:
            j += n
    tl.store(part + 4 * C, pcr * mr - pci * mi + dcr, mask=cmask)
    tl.store(part + 5 * C, pcr * mi + pci * mr + dci, mask=cmask)
    _publish(chain + 1 + s, 2)
    acc_r, acc_i, acc_b = _adj_sweep_rows(
        GR, GI, DGR, DGI, DV, cols, mr, mi, start, end, cmask, b2, N, C, REVERSE, BLOCK_C
    )
    _store_param_grads(RED, b, s, S, C, cols, cmask, tl.cdiv(C, BLOCK_C), beta, acc_r, acc_i, acc_b)


# ----------------------------------------------------------------------------------------------- launchers
def _scratch(x: torch.Tensor, seg: int, rows: int):
    """STATE (B * n_cblk, 1 + S) int32 zeros (tickets, flags) and PART (B, S, rows, C) for x (B, N, C)."""
    B, N, C = x.shape
    _check_rows(N, C)
    S = max(1, cdiv(N, seg))
    state = torch.zeros(B * cdiv(C, BLOCK_C), 1 + S, device=x.device, dtype=torch.int32)
    return state, torch.empty(B, S, rows, C, device=x.device, dtype=torch.float32)


def _fwd(v, h0, beta, z_re, z_im, reverse: bool, state, part, programs: int):
    """`programs` programs per chain on STATE, PART (see _scratch); they take the chains' next tickets.
    Returns (g_re, g_im) (B, N, C), written for the segments they took."""
    B, N, C = v.shape
    g_re, g_im = torch.empty_like(v), torch.empty_like(v)
    S = part.shape[1]
    launch(_lookback_fwd_kernel, (state.shape[0], programs),
        v, h0, beta, z_re, z_im, state, part, g_re, g_im, N, C, S, reverse, SEG_FWD, BLOCK_C, LOOK,
        num_warps=BLOCK_C // 32,
    )  # fmt: skip
    return g_re, g_im


def _bwd(g_re, g_im, dg_re, dg_im, beta, reverse: bool, state, part, programs: int):
    """The adjoint's programs as _fwd's. Returns dv (B, N, C) and RED (4, C, B S)."""
    B, N, C = g_re.shape
    S = part.shape[1]
    dv = torch.empty_like(g_re)
    red = torch.empty(4, C, B * S, device=g_re.device, dtype=torch.float32)
    launch(_lookback_bwd_kernel, (state.shape[0], programs),
        g_re, g_im, dg_re, dg_im, beta, state, part, dv, red, N, C, S, reverse, SEG_BWD, BLOCK_C, LOOK,
        num_warps=BLOCK_C // 32,
    )  # fmt: skip
    return dv, red


# ----------------------------------------------------------------------------------------------- custom ops
@torch.library.custom_op("phasebench::bk_core_lookback_fwd", mutates_args=())
def bk_core_lookback_fwd(
    v: torch.Tensor, h0: torch.Tensor, beta: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor, reverse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One causal sweep: v (B, N, C), h0, beta, z_re, z_im (C,), float32 contiguous -> (g_re, g_im) (B, N, C)."""
    state, part = _scratch(v, SEG_FWD, FWD_PART)
    return _fwd(v, h0, beta, z_re, z_im, reverse, state, part, part.shape[1])


@torch.library.custom_op("phasebench::bk_core_lookback_bwd", mutates_args=())
def bk_core_lookback_bwd(
    g_re: torch.Tensor, g_im: torch.Tensor, dg_re: torch.Tensor, dg_im: torch.Tensor, beta: torch.Tensor, reverse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjoint of bk_core_lookback_fwd: g, dg (B, N, C), beta (C,) -> dv (B, N, C), grads (4, C) of h0, beta,
    z_re, z_im."""
    state, part = _scratch(g_re, SEG_BWD, BWD_PART)
    dv, red = _bwd(g_re, g_im, dg_re, dg_im, beta, reverse, state, part, part.shape[1])
    return dv, red.sum(-1)


@bk_core_lookback_fwd.register_fake
def _bk_core_lookback_fwd_fake(v, h0, beta, z_re, z_im, reverse):
    return torch.empty_like(v), torch.empty_like(v)


@bk_core_lookback_bwd.register_fake
def _bk_core_lookback_bwd_fake(g_re, g_im, dg_re, dg_im, beta, reverse):
    return torch.empty_like(g_re), g_re.new_empty(4, g_re.shape[2])


def _bk_core_lookback_fwd_setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[2], *output)
    ctx.reverse = inputs[5]


def _bk_core_lookback_fwd_backward(ctx, bwd, dg_re, dg_im):
    beta, g_re, g_im = ctx.saved_tensors
    dv, grads = bwd(g_re, g_im, dg_re.float().contiguous(), dg_im.float().contiguous(), beta, ctx.reverse)
    return dv, *grads.unbind(), None


_bk_core_lookback = differentiable_op(
    bk_core_lookback_fwd, bk_core_lookback_bwd, _bk_core_lookback_fwd_setup_context, _bk_core_lookback_fwd_backward
)


# ----------------------------------------------------------------------------------------------- public
def bk_core_lookback(v, h0, beta, z_re, z_im, causal: bool = True):
    """One-pass Triton BK-Core. v (B, N, C); h0, beta, z_re, z_im (C,) -> (g_re, g_im) float32 (B, N, C)."""
    v = v.float().contiguous()
    h0, beta, z_re, z_im = (p.float().contiguous() for p in (h0, beta, z_re, z_im))
    gl = _bk_core_lookback(v, h0, beta, z_re, z_im, False)
    if causal:
        return gl
    return _bidirectional(v, h0, beta, z_re, z_im, gl, _bk_core_lookback(v, h0, beta, z_re, z_im, True))


__all__ = ["bk_core_lookback", "bk_core_lookback_fwd", "bk_core_lookback_bwd"]
