"""Triton BK-Core under the Triton interpreter (CPU) against the complex128 reference.

TRITON_INTERPRET is read when kernels.bk_core.triton is imported (@triton.jit time), so it is set here,
before that import. The compiled kernels on CUDA are tested in test_bk_core_gpu.py (its own process).
"""
import os

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import pytest  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from kernels.backend import backend  # noqa: E402
from kernels.bk_core import bk_core, bk_core_sequential  # noqa: E402
from kernels.bk_core import triton as bk_triton  # noqa: E402
from kernels.bk_core.triton import bk_core_triton  # noqa: E402
from bk_core_checks import check_against, make_inputs  # noqa: E402


CASES = [(1, None), (7, 4), (7, 8), (63, 8), (63, None), (130, 12), (130, 64)]


class TestInterpreted:
    @pytest.mark.parametrize("causal", [True, False])
    @pytest.mark.parametrize("n,chunk", CASES)
    def test_matches_sequential(self, n, chunk, causal):
        check_against(bk_core_sequential, make_inputs(1, n, 3, seed=n + (chunk or 0)), causal, chunk, 1e-4)

    def test_batch_and_channel_blocks(self):
        # two batch rows and C > BLOCK_C (two channel blocks, a ragged one)
        check_against(bk_core_sequential, make_inputs(2, 21, 70, seed=5), True, 8, 1e-4)

    def test_small_eta_bound(self):
        x = [t.float() for t in make_inputs(1, 90, 3, seed=8, eta_min=1e-3)]
        for causal in (True, False):
            g = torch.complex(*bk_core_triton(*x, causal=causal, chunk=8))
            assert torch.all(g.abs() <= (1.0 / x[4]) * (1 + 1e-5)) and torch.all(g.imag > 0)

    def test_dispatch(self):
        x = [t.float() for t in make_inputs(1, 20, 3, seed=2)]
        assert isinstance(bk_triton._sweep_kernel, InterpretedFunction)
        with backend("triton"):
            got = bk_core(*x)
        with backend("torch"):
            ref = bk_core(*x)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)

    def test_bad_chunk(self):
        x = [t.float() for t in make_inputs(1, 8, 2)]
        with pytest.raises(ValueError, match="multiple of 4"):
            bk_core_triton(*x, chunk=6)
