"""Triton BK-Core under the Triton interpreter (CPU) against the complex128 reference.

TRITON_INTERPRET is read when kernels.bk_core.triton is imported (@triton.jit time), so it is set here,
before that import. The compiled kernels on CUDA are tested in test_bk_core_gpu.py (its own process).
"""

import functools
import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from bk_core_checks import check_against, check_halo_fallback, in_band, make_inputs  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from kernels.backend import backend  # noqa: E402
from kernels.bk_core import bk_core, bk_core_sequential  # noqa: E402
from kernels.bk_core import triton as bk_triton  # noqa: E402
from kernels.bk_core.triton import bk_core_triton  # noqa: E402

CASES = [(1, None), (7, 4), (7, 8), (63, 8), (63, None), (130, 12), (130, 64)]
#: the halo kernels (the default) and the two-pass kernels alone (max_halo 0: what redoes a block whose halo falls
#: short; where a halo reaches the sequence's start, as at these lengths in the band, the two-pass kernels never run)
PATHS = pytest.mark.parametrize("max_halo", [bk_triton.MAX_HALO, 0], ids=["halo", "two_pass"])


class TestInterpreted:
    @pytest.mark.parametrize("causal", [True, False])
    @pytest.mark.parametrize("n,chunk", CASES)
    def test_matches_sequential(self, n, chunk, causal):
        check_against(bk_core_sequential, make_inputs(1, n, 3, seed=n + (chunk or 0)), causal, chunk, 1e-4)

    @pytest.mark.parametrize("n,chunk", [(63, 8), (130, 12)])
    def test_the_two_pass_kernels_alone_match_sequential(self, n, chunk):
        # bidirectional: both directions' sweeps and adjoints
        fn = functools.partial(bk_core_triton, chunk=chunk, max_halo=0)
        check_against(bk_core_sequential, make_inputs(1, n, 3, seed=n + chunk), False, tol=1e-4, fn=fn)

    @PATHS
    @pytest.mark.parametrize("causal", [True, False])
    def test_carries_in_band(self, causal, max_halo):
        # in the band a carry's influence outlasts a segment of 8: the forward's carries, and the adjoint's
        # first pass, which recomputes g from them, are seen in g and in every gradient
        fn = functools.partial(bk_core_triton, chunk=8, max_halo=max_halo)
        check_against(bk_core_sequential, in_band(1, 70, 3, seed=12), causal, tol=2e-5, fn=fn)

    def test_one_output_used(self):
        # the other output's gradient reaches the backward as None (none materialised) and counts as zero
        x64 = make_inputs(1, 40, 3, seed=13)
        xr = [t.clone().requires_grad_() for t in x64]
        ref = torch.autograd.grad(bk_core_sequential(*xr)[1].sum(), xr)
        xt = [t.float().requires_grad_() for t in x64]
        got = torch.autograd.grad(bk_core_triton(*xt, chunk=8)[1].sum(), xt)
        for name, g, r in zip(("v", "h0", "beta", "z_re", "z_im"), got, ref, strict=True):
            torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-4, msg=name)

    def test_batch_and_channel_blocks(self):
        # two batch rows and C > BLOCK_C (two channel blocks, a ragged one)
        check_against(bk_core_sequential, make_inputs(2, 21, 70, seed=5), True, 8, 1e-4)

    def test_small_eta_bound(self):
        x = [t.float() for t in make_inputs(1, 90, 3, seed=8, eta_min=1e-3)]
        for causal in (True, False):
            g = torch.complex(*bk_core_triton(*x, causal=causal, chunk=8))
            assert torch.all(g.abs() <= (1.0 / x[4]) * (1 + 1e-5)) and torch.all(g.imag > 0)

    @PATHS
    @pytest.mark.parametrize("reverse", [False, True])
    def test_the_adjoint_sweep_reads_g_only_before_each_step(self, reverse, max_halo):
        # the adjoint recomputes g from v: the sweep reads g only at the row before each 8-row step (its
        # segment's carry before the first), so g elsewhere may be anything; N = 63 in segments of 12 (a last
        # segment of 3 rows; steps of 8 and 4 rows)
        x = [t.float() for t in make_inputs(1, 63, 3, seed=21)]
        g_re, g_im, carry = bk_triton.bk_core_fwd(*x, reverse, 12, max_halo)
        dg_re, dg_im = torch.randn(2, *g_re.shape, generator=torch.Generator().manual_seed(1))
        read = torch.tensor([start + 7 for start in range(0, 63, 12) if start + 8 < 63])
        if reverse:
            read = 62 - read
        holes = torch.full_like(g_re, float("nan")), torch.full_like(g_im, float("nan"))
        for h, g in zip(holes, (g_re, g_im), strict=True):
            h[:, read] = g[:, read]

        def backward(gr, gi):
            return bk_triton.bk_core_bwd(*x, carry, gr, gi, dg_re, dg_im, reverse, 12, max_halo)

        want, got = backward(g_re, g_im), backward(*holes)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        for h in holes:
            h[:, read] = float("nan")
        assert backward(*holes)[0].isnan().any()

    def test_dispatch(self):
        x = [t.float() for t in make_inputs(1, 20, 3, seed=2)]
        assert isinstance(bk_triton._sweep_kernel, InterpretedFunction)
        with backend("triton"):
            got = bk_core(*x)
        with backend("torch"):
            ref = bk_core(*x)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)

    def test_carry_scans_split_the_channels(self):
        # 17 segments of 4 rows: each carry scan takes 16 of the 20 channels (512 elements a program), two programs
        # a batch row, the second ragged; in the band a carry from the wrong channel shows
        assert bk_triton._carry_blocks(17, 32) == (32, 16, 4)
        fn = functools.partial(bk_core_triton, chunk=4, max_halo=0)
        check_against(bk_core_sequential, in_band(1, 68, 20, seed=14), True, tol=2e-5, fn=fn)

    def test_bad_chunk(self):
        x = [t.float() for t in make_inputs(1, 8, 2)]
        with pytest.raises(ValueError, match="multiple of 4"):
            bk_core_triton(*x, chunk=6)
        with pytest.raises(ValueError, match="max_halo must be >= 0"):
            bk_core_triton(*x, chunk=4, max_halo=-1)

    def test_default_segments(self):
        # (block_c, n_cblk, L, S): ~128K threads at the bench shape; the floor of 32 rows with few channels
        assert bk_triton._plan(16, 16384, 64, None) == (64, 1, 128, 128)
        assert bk_triton._plan(1, 16384, 16, None) == (16, 1, 32, 512)
        assert bk_triton._plan(8, 4096, 32, None) == (32, 1, 32, 128)
        # the carry scans' tiles there (BLOCK_S, channels, warps): 512 elements a program
        assert bk_triton._carry_blocks(128, 64) == (128, 4, 4)
        assert bk_triton._carry_blocks(512, 16) == (512, 1, 4)

    def test_a_batch_row_past_int32_offsets_is_refused(self):
        # the row loops address a batch row by int32 offsets (row * C + channel), in both scans
        from kernels.bk_core import lookback

        assert bk_triton._plan(1, 2**15, 2**16 - 1, None)[2] > 0
        with pytest.raises(ValueError, match="N \\* C = 2147483648"):
            bk_triton._plan(1, 2**15, 2**16, None)
        with pytest.raises(ValueError, match="int32"):
            lookback._scratch(torch.empty(1, 2**15, 2**16, device="meta"), lookback.SEG_FWD, lookback.FWD_PART)


class TestHalo:
    """The halo kernels (each segment's carry from the rows just before it, mu from the rows just after) and the
    two-pass kernels gated behind them."""

    def test_flagged_rows_are_redone_by_the_two_pass_kernels(self):
        # right to left (REVERSE) here; test_bk_core_gpu.py runs both directions
        check_halo_fallback("cpu", True)

    def test_short_halos_match_sequential(self):
        # |v| up to 5: a carry fades within a few rows, so the halos stop well before the sequence's start (15
        # segments of 8 rows); bidirectional, so both directions' halos run
        check_against(bk_core_sequential, make_inputs(1, 120, 3, seed=31), False, 8, 1e-4)

    def test_halos_that_reach_the_start_are_exact_and_never_flagged(self):
        # in the band the guard never passes: every halo grows to row 0 (MAX_HALO rows cover N = 70)
        x = [t.float() for t in in_band(1, 70, 3, seed=12)]
        plan = bk_triton._plan(1, 70, 3, 8)
        w, g_re, g_im = torch.empty(1, plan[3], 2, 3), torch.empty(1, 70, 3), torch.empty(1, 70, 3)
        flag = bk_triton._halo_sweep(*x, w, g_re, g_im, False, plan, bk_triton.MAX_HALO)
        assert flag.tolist() == [0]
        two_pass = bk_triton._sweep(*x, False, 8, 0)
        torch.testing.assert_close((g_re, g_im, w), two_pass, rtol=2e-5, atol=2e-5)


class TestCustomOps:
    """phasebench::bk_core_fwd / bk_core_bwd: schema, fake, autograd registration; torch.compile through them."""

    # N = 12 with chunk 4: three segments, so the segment-map and carry launches run too; reverse only flips
    # a constexpr (both directions run in the bidirectional compile test below)
    def test_opcheck_fwd(self):
        x = [t.float().requires_grad_() for t in make_inputs(1, 12, 3, seed=3)]
        torch.library.opcheck(bk_triton.bk_core_fwd, (*x, True, 4))

    def test_opcheck_bwd(self):
        # not differentiable (no autograd registered): inputs without grad
        x = [t.float() for t in make_inputs(1, 12, 3, seed=4)]
        g_re, g_im, carry = bk_triton.bk_core_fwd(*x, True, 4)
        dg_re, dg_im = torch.randn(2, *g_re.shape, generator=torch.Generator().manual_seed(0))
        torch.library.opcheck(bk_triton.bk_core_bwd, (*x, carry, g_re, g_im, dg_re, dg_im, True, 4))

    def test_dynamo_sees_opaque_op(self):
        targets = set()

        def record(gm, example_inputs):
            targets.update(n.target for n in gm.graph.nodes if n.op == "call_function")
            return gm

        x = [t.float() for t in make_inputs(1, 12, 3, seed=6)]
        torch.compile(bk_core_triton, fullgraph=True, backend=record)(*x, causal=False, chunk=4)
        assert torch.ops.phasebench.bk_core_fwd.default in targets

    @pytest.mark.parametrize("causal", [True, False])
    def test_compile_fullgraph_matches_eager(self, causal):
        # N = 100, chunk 32: four segments (every launch of forward and backward runs)
        x64 = make_inputs(1, 100, 3, seed=7)
        gen = torch.Generator().manual_seed(1)
        w_re, w_im = torch.randn(2, *x64[0].shape, generator=gen)
        fn = torch.compile(bk_core_triton, fullgraph=True, backend="aot_eager")
        outs, grads = [], []
        for f in (bk_core_triton, fn):
            x = [t.float().requires_grad_() for t in x64]
            o_re, o_im = f(*x, causal=causal, chunk=32)
            grads.append(torch.autograd.grad((o_re * w_re).sum() + (o_im * w_im).sum(), x))
            outs.append((o_re, o_im))
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
        for name, got, ref in zip(("v", "h0", "beta", "z_re", "z_im"), grads[1], grads[0], strict=False):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4, msg=name)
