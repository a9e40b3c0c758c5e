"""One-pass (look-back) Triton BK-Core under the Triton interpreter (CPU) against the complex128 reference and
the two-pass kernels.

TRITON_INTERPRET is read when the kernel modules are imported (@triton.jit time), so it is set here, before
those imports. The interpreter runs programs one after another, in launch order: a look-back there stops at
its first predecessor. TestLookBack relaunches on doctored flags to walk over several predecessors' aggregates.
The compiled kernels on CUDA are tested in test_bk_core_gpu.py (its own process).
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from bk_core_checks import check_against, in_band, make_inputs, two_pass  # noqa: E402
from compile_checks import assert_compiles_like_eager  # noqa: E402

from kernels.bk_core import bk_core_sequential  # noqa: E402
from kernels.bk_core import lookback as lb  # noqa: E402
from kernels.bk_core.lookback import bk_core_lookback  # noqa: E402

#: the plan the shapes below are written for, shorter than the module's own (DEFAULTS; test_default_plan) so that
#: they cross several segments at the interpreter's speed
PLAN = {"SEG_FWD": 64, "SEG_BWD": 32, "BLOCK_C": 32}
DEFAULTS = {name: getattr(lb, name) for name in PLAN}
N_LONG = 4 * 64 - 5  # 251: 4 forward segments, 8 backward ones, the last of each ragged
#: 443: 7 forward segments, 14 backward ones: a doctored walk crosses 5 and 12 aggregates
N_WALK = 7 * 64 - 5


@pytest.fixture(scope="module", autouse=True)
def plan():
    with pytest.MonkeyPatch.context() as mp:
        for name, value in PLAN.items():
            mp.setattr(lb, name, value)
        yield


class TestInterpreted:
    # N = 1; 30 < one segment either way; 63: one forward segment, two backward ones
    @pytest.mark.parametrize("causal", [True, False])
    @pytest.mark.parametrize("n", [1, 30, 63])
    def test_matches_sequential(self, n, causal):
        check_against(bk_core_sequential, make_inputs(1, n, 3, seed=n), causal, fn=bk_core_lookback)

    @pytest.mark.parametrize("causal", [True, False])
    def test_carries_between_segments(self, causal):
        # N = 130: three forward segments, five backward ones; in the band a wrong carry shows
        check_against(bk_core_sequential, in_band(1, 130, 3, seed=2), causal, tol=2e-5, fn=bk_core_lookback)

    def test_matches_two_pass(self):
        # bidirectional: both sweeps and both adjoints; N = 130: three forward segments, five backward ones
        check_against(two_pass, make_inputs(1, 130, 3, seed=4), False, tol=2e-5, fn=bk_core_lookback)

    def test_other_segment_lengths_and_rounds(self, monkeypatch):
        # a plan bench/tiles.py --op bk_core times (four predecessors a round); N = 130 is 5 forward segments
        # and 9 backward ones here
        for name, value in (("SEG_FWD", 32), ("SEG_BWD", 16), ("LOOK", 4)):
            monkeypatch.setattr(lb, name, value)
        check_against(bk_core_sequential, in_band(1, 130, 3, seed=6), True, tol=2e-5, fn=bk_core_lookback)

    def test_batch_and_channel_blocks(self):
        # two batch rows and C = 40: two channel blocks, the second ragged, so four chains of tickets
        check_against(bk_core_sequential, make_inputs(2, 40, 40, seed=5), True, fn=bk_core_lookback)

    def test_default_plan(self, monkeypatch):
        # the module's own plan (128 / 64 rows, 64 channels a program: two warps, C = 3 masks 61 of them);
        # N = 300: 3 forward segments and 5 backward ones, both sweeps and both adjoints
        for name, value in DEFAULTS.items():
            monkeypatch.setattr(lb, name, value)
        check_against(bk_core_sequential, in_band(1, 300, 3, seed=7), False, tol=2e-5, fn=bk_core_lookback)

    def test_two_warps_short_segments(self, monkeypatch):
        # 64 channels a program (C = 40 masks 24 of them), 32 / 16 rows, two batch rows
        for name, value in (("BLOCK_C", 64), ("SEG_FWD", 32), ("SEG_BWD", 16)):
            monkeypatch.setattr(lb, name, value)
        check_against(bk_core_sequential, make_inputs(2, 67, 40, seed=8), True, fn=bk_core_lookback)


@pytest.fixture(scope="module", params=[N_LONG, N_WALK])
def swept(request):
    """Inputs, forward and adjoint run to completion, each with its STATE and PART."""
    x = [t.float() for t in in_band(1, request.param, 3, seed=11)]
    fwd = lb._scratch(x[0], lb.SEG_FWD, lb.FWD_PART)
    g = lb._fwd(*x, False, *fwd, fwd[1].shape[1])
    dg = torch.randn(2, *g[0].shape, generator=torch.Generator().manual_seed(0))
    bwd = lb._scratch(x[0], lb.SEG_BWD, lb.BWD_PART)
    adj = lb._bwd(*g, *dg, x[2], False, *bwd, bwd[1].shape[1])
    return x, g, dg, fwd, adj, bwd


def doctor(state, part, inclusive: slice):
    """Tickets resume at S-1 for one more program a chain; segments 1 .. S-2 show only their aggregates (flag 1,
    inclusive rows NaN), so that program walks over all of them."""
    S = part.shape[1]
    state, part = state.clone(), part.clone()
    state[:, 0] = S - 1
    state[:, 2:S] = 1
    part[:, 1 : S - 1, inclusive] = float("nan")
    return state, part


class TestLookBack:
    """The ticket, not program_id, picks a program's segment; the look-back combines aggregates in order."""

    def test_every_program_takes_a_ticket_and_publishes_its_prefix(self, swept):
        *_, (state, part), _, (bstate, bpart) = swept
        for st, pt in ((state, part), (bstate, bpart)):
            assert st[:, 0].tolist() == [pt.shape[1]]
            assert (st[:, 1:] == 2).all()

    def test_forward_walks_back_over_aggregates(self, swept):
        x, g, _, (state, part), _, _ = swept
        S = part.shape[1]
        state, part = doctor(state, part, slice(8, 10))
        again = lb._fwd(*x, False, state, part, 1)  # program_id 0 of each chain, ticket S-1
        last = slice((S - 1) * lb.SEG_FWD, x[0].shape[1])
        for got, ref in zip(again, g, strict=True):
            torch.testing.assert_close(got[:, last], ref[:, last], rtol=1e-5, atol=1e-5)
        assert (state[:, 0] == S).all() and (state[:, S] == 2).all()

    def test_adjoint_walks_right_over_aggregates(self, swept):
        x, g, dg, _, (dv, red), (state, part) = swept
        S = part.shape[1]
        state, part = doctor(state, part, slice(4, 6))
        dv1, red1 = lb._bwd(*g, *dg, x[2], False, state, part, 1)  # ticket S-1: segment 0
        first = slice(0, lb.SEG_BWD)
        torch.testing.assert_close(dv1[:, first], dv[:, first], rtol=1e-5, atol=1e-5)
        segment0 = lambda red: red.unflatten(-1, (-1, S))[..., 0]  # noqa: E731  (RED is (4, C, B S))
        torch.testing.assert_close(segment0(red1), segment0(red), rtol=1e-5, atol=1e-5)
        assert (state[:, 0] == S).all() and (state[:, 1] == 2).all()


@triton.jit
def _round_kernel(CHAIN, SEGS, VALID, OUT, LOOK: tl.constexpr):
    look = tl.arange(0, LOOK)
    n, stop = lb._round(CHAIN, tl.load(SEGS + look), tl.load(VALID + look) != 0, LOOK)
    tl.store(OUT, n)
    tl.store(OUT + 1, stop)


# flags of segments 3, 2, 1, 0 (nearest first; None: the segment does not exist) -> (n, flag of segment 3 - n)
ROUNDS = [
    ((2, 1, 1, 1), (0, 2)),  # the nearest has its inclusive value
    ((1, 1, 2, 1), (2, 2)),  # two aggregates, then an inclusive value ends the walk
    ((1, 0, 2, 2), (1, 0)),  # one aggregate, then a segment that published nothing: wait there
    ((1, 1, 1, 1), (4, 0)),  # a whole round of aggregates: the walk goes on past it
    ((0, 2, 2, 2), (0, 0)),
    ((1, 1, None, None), (2, 0)),  # past the last segment counts as nothing published
]


@pytest.mark.parametrize("flags, expected", ROUNDS)
def test_a_look_back_round_stops_at_the_first_segment_without_an_aggregate(flags, expected):
    # a round of four (bench/tiles.py --op bk_core times it; lb.LOOK is 1)
    state = torch.zeros(1, 1 + len(flags), dtype=torch.int32)  # ticket, then the flags of segments 0, 1, ...
    segs = torch.arange(len(flags) - 1, -1, -1, dtype=torch.int32)
    state[0, 1 + segs.long()] = torch.tensor([f or 0 for f in flags], dtype=torch.int32)
    valid = torch.tensor([f is not None for f in flags], dtype=torch.int32)
    out = torch.empty(2, dtype=torch.int32)
    _round_kernel[(1,)](state, segs, valid, out, len(flags))
    assert tuple(out.tolist()) == expected


class TestCustomOps:
    """phasebench::bk_core_lookback_fwd / _bwd: schema, fake, autograd registration; torch.compile through them."""

    # N = 40: one forward segment, two backward ones (a look-back)
    def test_opcheck_fwd(self):
        x = [t.float().requires_grad_() for t in make_inputs(1, 40, 3, seed=3)]
        torch.library.opcheck(lb.bk_core_lookback_fwd, (*x, True))

    def test_opcheck_bwd(self):
        x = [t.float() for t in make_inputs(1, 40, 3, seed=4)]
        g_re, g_im = lb.bk_core_lookback_fwd(*x, True)
        dg_re, dg_im = torch.randn(2, *g_re.shape, generator=torch.Generator().manual_seed(0))
        torch.library.opcheck(lb.bk_core_lookback_bwd, (g_re, g_im, dg_re, dg_im, x[2], True))

    def test_compile_fullgraph_matches_eager(self):
        x = [t.float() for t in make_inputs(1, 40, 3, seed=7)]
        op = torch.ops.phasebench.bk_core_lookback_fwd
        assert_compiles_like_eager(lambda *x: torch.stack(bk_core_lookback(*x)), op, x, atol=1e-5)
