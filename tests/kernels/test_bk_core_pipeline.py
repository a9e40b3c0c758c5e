"""Pipelined Triton BK-Core (kernels/bk_core/pipeline.py) under the Triton interpreter (CPU): its ticket order, and
its passes against the two-pass launches they replace.

TRITON_INTERPRET is read when the kernel modules are imported (@triton.jit time), so it is set here, before those
imports. The interpreter runs programs one after another in launch order, so tickets come in order and no wait
spins there; the ticket order itself is what keeps the GPU's waits finite, and is checked on its own below. The
compiled kernels on CUDA are tested in test_bk_core_gpu.py (its own process).
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from bk_core_checks import in_band, make_inputs  # noqa: E402

from kernels.bk_core import pipeline as pl  # noqa: E402
from kernels.bk_core import triton as bk  # noqa: E402


@triton.jit
def _tickets_kernel(OUT, M, K, S, U, LAG):
    t = tl.program_id(0)
    unit, role, index = pl._ticket(t, M, K, S, U, LAG)
    tl.store(OUT + 3 * t, unit)
    tl.store(OUT + 3 * t + 1, role)
    tl.store(OUT + 3 * t + 2, index)


def tickets(S, K, U, lag):
    """(unit, role, index) of every ticket of a launch with S segments, K carry groups and U units."""
    n = U * (S - 1 + K + S)
    out = torch.full((n, 3), -1, dtype=torch.int32)
    _tickets_kernel[(n,)](out, S - 1, K, S, U, lag)
    return [tuple(r) for r in out.tolist()]


class TestTickets:
    @pytest.mark.parametrize("S, K, U, lag", [(1, 1, 1, 1), (4, 2, 3, 1), (4, 2, 3, 2), (3, 1, 5, 3), (2, 4, 4, 4)])
    def test_every_program_once_in_an_order_without_waits_on_later_tickets(self, S, K, U, lag):
        order = tickets(S, K, U, lag)
        expected = [(u, 0, s) for u in range(U) for s in range(S - 1)]
        expected += [(u, 1, k) for u in range(U) for k in range(K)] + [(u, 2, s) for u in range(U) for s in range(S)]
        assert sorted(order) == sorted(expected)
        at = {x: t for t, x in enumerate(order)}
        for u in range(U):
            maps, carries, sweeps = ([at[x] for x in expected if x[:2] == (u, r)] for r in range(3))
            # a carry waits on its unit's maps, a sweep on its unit's carries: all on smaller tickets
            assert max(maps, default=-1) < min(carries) and max(carries) < min(sweeps)
            if u + lag < U:  # a unit's sweeps follow the carries of the unit `lag` after it
                ahead = [at[(u + lag, 1, k)] for k in range(K)]
                assert max(ahead) < min(sweeps)


def inputs(B, N, C, seed):
    x = [t.float() for t in make_inputs(B, N, C, seed=seed)]
    g = torch.Generator().manual_seed(seed)
    return x, [torch.randn(B, N, C, generator=g) for _ in range(2)]


# (B, N, C, chunk, lag, carry channels): ragged last segments, one segment, channel blocks (C = 70: two, the second
# ragged), a lag past the units
PLANS = [(2, 37, 5, 8, 1, 1), (3, 64, 20, 16, 2, 2), (2, 50, 70, 12, 1, 4), (1, 9, 3, None, 3, 1), (1, 30, 3, 4, 2, 1)]


class TestAgainstTwoPass:
    """The same kernels' steps in the same order: outputs equal the two-pass launches' bit for bit."""

    @pytest.mark.parametrize("reverse", [False, True])
    @pytest.mark.parametrize("B, N, C, chunk, lag, cb", PLANS)
    def test_sweep(self, B, N, C, chunk, lag, cb, reverse):
        (v, *params), _ = inputs(B, N, C, seed=N + C)
        want = bk._sweep(v, *params, reverse, chunk)
        got = pl.pipe_sweep(v, *params, reverse, chunk, lag=lag, carry_channels=cb)
        for w, g in zip(want, got, strict=True):
            assert torch.equal(w, g)

    @pytest.mark.parametrize("reverse", [False, True])
    @pytest.mark.parametrize("B, N, C, chunk, lag, cb", PLANS)
    def test_adjoint(self, B, N, C, chunk, lag, cb, reverse):
        (v, *params), dg = inputs(B, N, C, seed=N + C + 1)
        fwd = bk._sweep(v, *params, reverse, chunk)
        want = bk._adjoint(v, *params, fwd[2], *fwd[:2], *dg, reverse, chunk)
        got = pl.pipe_adjoint(v, *params, fwd[2], *fwd[:2], *dg, reverse, chunk, lag=lag, carry_channels=cb)
        for w, g in zip(want, got, strict=True):
            assert torch.equal(w, g)

    def test_carries_in_band(self):
        # in the band a wrong carry between segments shows in g many rows on
        v, *params = (t.float() for t in in_band(2, 70, 3, seed=3))
        for w, g in zip(bk._sweep(v, *params, False, 8), pl.pipe_sweep(v, *params, False, 8, lag=2), strict=True):
            assert torch.equal(w, g)


def test_state_counts_every_program(monkeypatch):
    # after a launch the ticket counter holds the launch's size and each unit's counters its maps and carry groups
    states = []
    zeros = torch.zeros

    def recording_zeros(*shape, **kw):
        t = zeros(*shape, **kw)
        if kw.get("dtype") is torch.int32:
            states.append(t)
        return t

    monkeypatch.setattr(pl.torch, "zeros", recording_zeros)
    (v, *params), _ = inputs(2, 50, 70, seed=9)
    pl.pipe_sweep(v, *params, False, 12, lag=2, carry_channels=4)
    block_c, n_cblk, _, S = bk._plan(2, 50, 70, 12)
    units, groups = 2 * n_cblk, block_c // 4
    (state,) = states
    assert state[0].item() == units * (S - 1 + groups + S)
    assert state[1 : 1 + units].tolist() == [S - 1] * units
    assert state[1 + units :].tolist() == [groups] * units
