"""Run 44 (prepared in the thirty-fifth session): BK-Core's forward in one pass whose programs scan in parallel.

The landed forward (kernels/bk_core/triton.py) moves 16 bytes an element in three launches (segment maps 4, a scan
over segments, the sweep 12); the look-back forward (kernels/bk_core/lookback.py) launches once but runs each
channel's segment as one thread's serial chain and reads it twice, since a segment held in that thread's registers
took 168-254 of them (run 14). Here a program holds its segment in registers spread over its threads:

  - a segment of L = K R rows is K runs of R rows; a thread owns one run of one channel, so a program's tile is
    (K, BLOCK_C) and its R row tiles are loaded once (4 bytes an element);
  - each thread composes its run's Mobius product M_{R-1} ... M_0 serially (M = [[0, 1], [-b2, a]]), and
    `tl.associative_scan` over the K runs gives each run's prefix Q_k (2 x 2 complex, rescaled);
  - the segment's product Q_{K-1} is published and the carry w (g entering the segment) found by the look-back
    of lookback.py (a ticket per chain, flags, LOOK predecessors a round);
  - g leaving run k is Q_k(w); g entering run k, the one before it (`tl.gather`); each thread then runs its R
    rows' recurrence g_i = 1/(a_i - b2 g_{i-1}) from it over the rows it holds and writes g (8 bytes an element).

12 bytes an element in one launch: at the bench's (16, 16384, 64), 0.201 GB, 0.067 ms at the H100's copy bandwidth,
against the landed forward's 0.107 ms (run 42). Whether the look-back's latency lets it get near is what run 44
times (`time`). Causal only (REVERSE is the landed kernels' mapping, checked by the reversed case).

    python3 bk_tile.py check             # CPU (TRITON_INTERPRET=1) or GPU: against float64 and the landed forward
    python3 bk_tile.py time OUT.json     # GPU: forward from CUDA graphs, landed / look-back / tile choices
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
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "bk-fix-run41"))

import bk_fix  # noqa: E402
from kernels.bk_core.lookback import _chain, _g_entering, _mobius, _publish  # noqa: E402
from kernels.bk_core.lookback import _fwd as lookback_fwd  # noqa: E402
from kernels.bk_core.lookback import _scratch as lookback_scratch  # noqa: E402
from kernels.bk_core.naive import bk_core_sequential  # noqa: E402
from kernels.bk_core.triton import _cf_step, _channel_params, _mat4, _mat_combine, _row, _store_mat, _sweep  # noqa: E402
from kernels.grid import cdiv  # noqa: E402
from kernels.launch import launch  # noqa: E402

PART_ROWS = 10  # per (segment, channel): the segment's product (8), g leaving it (2)


# ----------------------------------------------------------------------------------------------- kernel
@triton.jit
def _run_rows(vb, first, j, N, C, cols, cmask, REVERSE: tl.constexpr):
    """Row j of every run: offsets (K, BLOCK_C) into a batch row, validity, and the potentials there."""
    i = first + j
    valid = (i < N)[:, None] & cmask[None, :]
    off = _row(i, N, REVERSE)[:, None] * C + cols[None, :]
    return off, valid, tl.load(vb + off, mask=valid, other=0.0)


@triton.jit
def _last(x, runs, K: tl.constexpr):
    """Row K-1 of a (K, BLOCK_C) tile -> (BLOCK_C,)."""
    return tl.sum(tl.where(runs[:, None] == K - 1, x, 0.0), axis=0)


@triton.jit
def _step_store(grb, gib, off, valid, x, gr, gi, ar0, ai, b2):
    """One row of every run: g <- 1/(a - b2 g), written where valid -> g."""
    gr, gi = _cf_step(gr, gi, x, valid, ar0, ai, b2, True)
    tl.store(grb + off, gr, mask=valid)
    tl.store(gib + off, gi, mask=valid)
    return gr, gi


@triton.jit
def _tile_fwd_kernel(V, H0, BETA, ZRE, ZIM, STATE, PART, GR, GI, N, C, S, REVERSE: tl.constexpr, K: tl.constexpr,
                     BLOCK_C: tl.constexpr, LOOK: tl.constexpr):  # fmt: skip
    """GR, GI (B, N, C); STATE (B * n_cblk, 1 + S) int32: ticket, flag of each segment; PART (B, S, 10, C).
    Segments of 8 K rows: K runs of R = 8."""
    b, cols, cmask, chain = _chain(STATE, C, S, BLOCK_C)
    s = tl.atomic_add(chain, 1)
    ar0, ai, b2 = _channel_params(H0, BETA, ZRE, ZIM, cols, cmask)
    r0, ri, rb = ar0[None, :], ai[None, :], b2[None, :]
    bn = b.to(tl.int64) * N * C
    vb = V + bn
    runs = tl.arange(0, K)
    first = s * (8 * K) + runs * 8  # (K,) logical first row of each run
    o0, k0, x0 = _run_rows(vb, first, 0, N, C, cols, cmask, REVERSE)
    o1, k1, x1 = _run_rows(vb, first, 1, N, C, cols, cmask, REVERSE)
    o2, k2, x2 = _run_rows(vb, first, 2, N, C, cols, cmask, REVERSE)
    o3, k3, x3 = _run_rows(vb, first, 3, N, C, cols, cmask, REVERSE)
    o4, k4, x4 = _run_rows(vb, first, 4, N, C, cols, cmask, REVERSE)
    o5, k5, x5 = _run_rows(vb, first, 5, N, C, cols, cmask, REVERSE)
    o6, k6, x6 = _run_rows(vb, first, 6, N, C, cols, cmask, REVERSE)
    o7, k7, x7 = _run_rows(vb, first, 7, N, C, cols, cmask, REVERSE)
    one = tl.full([K, BLOCK_C], 1.0, tl.float32)
    zero = tl.zeros([K, BLOCK_C], tl.float32)
    p = _mat4(one, zero, zero, zero, zero, zero, one, zero, x0, x1, x2, x3, k0, k1, k2, k3, r0, ri, rb, True)
    p = _mat4(*p, x4, x5, x6, x7, k4, k5, k6, k7, r0, ri, rb, True)
    q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i = tl.associative_scan(p, axis=0, combine_fn=_mat_combine)
    a00r, a00i, a01r, a01i = _last(q00r, runs, K), _last(q00i, runs, K), _last(q01r, runs, K), _last(q01i, runs, K)
    a10r, a10i, a11r, a11i = _last(q10r, runs, K), _last(q10i, runs, K), _last(q11r, runs, K), _last(q11i, runs, K)
    part = PART + (b.to(tl.int64) * S + s) * 10 * C + cols
    if s > 0:
        _store_mat(part, C, cmask, a00r, a00i, a01r, a01i, a10r, a10i, a11r, a11i)
        _publish(chain + 1 + s, 1)
    wr, wi = _g_entering(chain, PART, b, s, S, C, cols, cmask, BLOCK_C, LOOK)  # the look-back, lookback.py's
    lr, li = _mobius(a00r, a00i, a01r, a01i, a10r, a10i, a11r, a11i, wr, wi)
    tl.store(part + 8 * C, lr, mask=cmask)
    tl.store(part + 9 * C, li, mask=cmask)
    _publish(chain + 1 + s, 2)
    # g leaving run k is Q_k(w); the run before it hands its value to run k (run 0 takes w)
    w2r, w2i = wr[None, :] + zero, wi[None, :] + zero
    er, ei = _mobius(q00r, q00i, q01r, q01i, q10r, q10i, q11r, q11i, w2r, w2i)
    before = tl.maximum(runs - 1, 0)[:, None] + tl.zeros([K, BLOCK_C], tl.int32)
    head = runs[:, None] == 0
    gr = tl.where(head, w2r, tl.gather(er, before, 0))
    gi = tl.where(head, w2i, tl.gather(ei, before, 0))
    grb, gib = GR + bn, GI + bn
    gr, gi = _step_store(grb, gib, o0, k0, x0, gr, gi, r0, ri, rb)
    gr, gi = _step_store(grb, gib, o1, k1, x1, gr, gi, r0, ri, rb)
    gr, gi = _step_store(grb, gib, o2, k2, x2, gr, gi, r0, ri, rb)
    gr, gi = _step_store(grb, gib, o3, k3, x3, gr, gi, r0, ri, rb)
    gr, gi = _step_store(grb, gib, o4, k4, x4, gr, gi, r0, ri, rb)
    gr, gi = _step_store(grb, gib, o5, k5, x5, gr, gi, r0, ri, rb)
    gr, gi = _step_store(grb, gib, o6, k6, x6, gr, gi, r0, ri, rb)
    gr, gi = _step_store(grb, gib, o7, k7, x7, gr, gi, r0, ri, rb)


# ----------------------------------------------------------------------------------------------- launcher
def tile_fwd(v, h0, beta, z_re, z_im, reverse=False, K=16, block_c=32, warps=4, look=1):
    """One causal sweep: v (B, N, C), h0, beta, z_re, z_im (C,) float32 contiguous -> (g_re, g_im) (B, N, C)."""
    B, N, C = v.shape
    S = max(1, cdiv(N, 8 * K))
    n_cblk = cdiv(C, block_c)
    state = torch.zeros(B * n_cblk, 1 + S, device=v.device, dtype=torch.int32)
    part = torch.empty(B, S, PART_ROWS, C, device=v.device, dtype=torch.float32)
    g_re, g_im = torch.empty_like(v), torch.empty_like(v)
    launch(_tile_fwd_kernel, (B * n_cblk, S),
        v, h0, beta, z_re, z_im, state, part, g_re, g_im, N, C, S, reverse, K, block_c, look, num_warps=warps,
    )  # fmt: skip
    return g_re, g_im


# ----------------------------------------------------------------------------------------------- checks, timing
def inputs(kind: str, B: int, N: int, C: int, device: str, seed: int = 0):
    """bk-fix-run41/bk_fix.py's inputs (bench: bench/kernels.py's case; model: BKCore's initial parameters)."""
    return [t.detach() for t in bk_fix.inputs(kind, B, N, C, device, seed)]


def check(device: str) -> None:
    """The tile forward against float64 (the sequential reference) and the landed forward, causal and reversed."""
    cases = [  # (kind, B, N, C, K, block_c, warps, look)
        ("bench", 2, 100, 20, 4, 32, 1, 1),  # segments of 32: four, the last partial; 12 masked channels
        ("model", 2, 100, 20, 4, 32, 1, 1),
        ("bench", 1, 37, 5, 2, 16, 1, 1),
        ("bench", 1, 7, 3, 1, 16, 1, 1),  # one run, most rows masked
        ("model", 1, 300, 70, 2, 32, 1, 4),  # three channel blocks, LOOK 4
        ("bench", 2, 1024, 16, 16, 16, 2, 1),  # segments of the bench's length
        ("model", 1, 1024, 16, 16, 16, 2, 1),
    ]
    for kind, B, N, C, K, bc, warps, look in cases:
        args = inputs(kind, B, N, C, device)
        for reverse in (False, True):
            g_re, g_im = tile_fwd(*args, reverse=reverse, K=K, block_c=bc, warps=warps, look=look)
            v, *p = (t.double() for t in args)
            ref_re, ref_im = bk_core_sequential(v.flip(1) if reverse else v, *p)
            if reverse:
                ref_re, ref_im = ref_re.flip(1), ref_im.flip(1)
            land_re, land_im = _sweep(*args, reverse, None)[:2]
            scale = torch.maximum(ref_re.abs().max(), ref_im.abs().max()).item()
            err = max((g_re.double() - ref_re).abs().max().item(), (g_im.double() - ref_im).abs().max().item())
            err_land = max(
                (land_re.double() - ref_re).abs().max().item(), (land_im.double() - ref_im).abs().max().item()
            )
            print(f"{kind} ({B}, {N}, {C}) K {K} block_c {bc} look {look} reverse {reverse}: max err / max|ref| "
                  f"tile {err / scale:.1e}, landed {err_land / scale:.1e}", flush=True)  # fmt: skip
            assert err / scale <= max(4 * err_land / scale, 1e-6), (kind, B, N, C, K, reverse, err, err_land)


#: (K, block_c, warps, look): segments of 8 K rows. Compiled for sm_90 with triton 3.6 (no GPU; the thirty-fifth
#: session), none spilling: 128 registers a thread at 1-2 elements a thread (the first four), 208 with LOOK 4, 226 at 4
#: elements (the last)
CHOICES = [
    (16, 32, 8, 1),
    (8, 32, 4, 1),
    (8, 64, 8, 1),
    (32, 32, 16, 1),
    (16, 32, 8, 4),
    (16, 32, 4, 1),
]


def time_all(out: str, shape=(16, 16384, 64)) -> None:
    """The forward from CUDA graphs: landed (three launches), look-back, and each tile choice; 3 interleaved rounds,
    median; GB/s by 12 bytes an element."""
    import triton.testing

    args = inputs("bench", *shape, "cuda")
    state, part = lookback_scratch(args[0], 128, 10)
    fns = {
        "landed": lambda: _sweep(*args, False, None),
        "lookback": lambda: lookback_fwd(*args, False, state.zero_(), part, part.shape[1]),
    }
    for K, bc, warps, look in CHOICES:
        fns[f"tile K{K} c{bc} w{warps} look{look}"] = (
            lambda K=K, bc=bc, warps=warps, look=look: tile_fwd(*args, K=K, block_c=bc, warps=warps, look=look)
        )
    want = _sweep(*args, False, None)[:2]
    diffs = {}
    for name, fn in fns.items():
        got = fn()[:2]
        diffs[name] = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(got, want, strict=True))
    times = {name: [] for name in fns}
    for _ in range(3):
        for name, fn in fns.items():
            times[name].append(triton.testing.do_bench_cudagraph(fn, rep=100))
    B, N, C = shape
    mb = 12 * B * N * C / 1e6  # MB at 12 bytes an element; MB per ms is GB/s
    rows = {}
    for name, t in times.items():
        med = statistics.median(t)
        rows[name] = dict(ms=med, rounds=t, gbps_by_12=mb / med, rel_diff_vs_landed=diffs[name])
        print(f"{name:28s} {med:.4f} ms  {mb / med:7.0f} GB/s by 12 B  rel diff {diffs[name]:.1e}", flush=True)
    write_rows(out, rows, shape)


def write_rows(out: str, rows: dict, shape) -> None:
    """rows as JSON with the environment (card, torch, triton, the commit) and the shape timed."""
    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT"), shape=shape)  # fmt: skip
    with open(out, "w") as f:
        json.dump(dict(env=env, rows=rows), f, indent=1)


def main(argv, script: str, check_fn, time_fn) -> None:
    """`script check` (on the GPU where there is one) or `script time OUT.json`; anything else exits 2."""
    if len(argv) < 2 or argv[1] not in ("check", "time") or (argv[1] == "time" and len(argv) < 3):
        print(f"usage: {script} check | time OUT.json", file=sys.stderr)
        sys.exit(2)
    if argv[1] == "check":
        check_fn("cuda" if torch.cuda.is_available() else "cpu")
    else:
        time_fn(argv[2])


if __name__ == "__main__":
    main(sys.argv, "bk_tile.py", check, time_all)
