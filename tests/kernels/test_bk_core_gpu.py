"""Triton BK-Core compiled on CUDA, up to N = 16384, against the float64 references (skipped without a GPU).

Run in a pytest process of its own: the interpreter test modules set TRITON_INTERPRET=1 at import.
"""

import functools

import pytest
import torch
from bk_core_checks import check_against, check_halo_fallback, in_band, make_inputs, two_pass
from gpu_marks import GPU_ONLY

from kernels.backend import backend
from kernels.bk_core import bk_core, bk_core_parallel, bk_core_sequential
from kernels.bk_core import triton as bk
from kernels.bk_core.lookback import bk_core_lookback

pytestmark = GPU_ONLY


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n,chunk", [(1, None), (7, 4), (63, 8), (130, 12), (1000, None), (4096, 64)])
def test_matches_sequential(n, chunk, causal):
    check_against(bk_core_sequential, make_inputs(2, n, 5, seed=n, device="cuda"), causal, chunk)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n,chunk", [(16384, None), (16384, 256), (8191, 128)])
def test_long_matches_parallel_fp64(n, chunk, causal):
    check_against(bk_core_parallel, make_inputs(2, n, 70, seed=n, device="cuda"), causal, chunk)


@pytest.mark.parametrize("n,chunk", [(130, 12), (8191, 128)])
def test_the_two_pass_kernels_alone_match_parallel_fp64(n, chunk):
    # max_halo 0: the kernels that redo a block whose halo falls short, ungated, both directions
    fn = functools.partial(bk.bk_core_triton, chunk=chunk, max_halo=0)
    check_against(bk_core_parallel, make_inputs(2, n, 70, seed=n + 1, device="cuda"), False, fn=fn)


def test_bench_shape_runs_and_is_bounded():
    x = [t.float() for t in make_inputs(16, 16384, 64, seed=3, device="cuda")]
    x[0].requires_grad_()
    g_re, g_im = bk_core(*x)
    assert torch.all(torch.complex(g_re, g_im).abs() <= 1.0 / x[4] * (1 + 1e-5))
    (g_re.sum() + g_im.sum()).backward()
    assert torch.isfinite(x[0].grad).all()


@pytest.mark.parametrize("reverse", [False, True])
def test_halo_flagged_rows_are_redone_by_the_two_pass_kernels(reverse):
    check_halo_fallback("cuda", reverse)


def test_halo_fallback_inside_a_cuda_graph():
    # the fallback is decided on the device: a captured step redoes the flagged rows on replay, with new inputs
    band = in_band(1, 48, 70, seed=3, device="cuda")
    far = make_inputs(1, 48, 70, seed=4, device="cuda")
    x = [torch.cat([band[0], far[0]]).float()] + [p.float() for p in band[1:]]
    static = [t.clone() for t in x]
    bk._sweep(*static, False, 8, 32)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = bk._sweep(*static, False, 8, 32)
    static[0].copy_(x[0].flip(0))  # the band row now second
    graph.replay()
    want = bk._sweep(*static, False, 8, 0)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(out[0][1], want[0][1])


def test_dispatch_on_cuda():
    x = [t.float() for t in make_inputs(2, 300, 8, seed=1, device="cuda")]
    with backend("auto"):
        got = bk_core(*x)
    with backend("torch"):
        ref = bk_core(*x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


# the one-pass (look-back) path: on a GPU programs start out of order and walks go past their first predecessor


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n", [1, 7, 63, 130, 1000, 4096])
def test_lookback_matches_sequential(n, causal):
    check_against(bk_core_sequential, make_inputs(2, n, 5, seed=n, device="cuda"), causal, fn=bk_core_lookback)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n", [16384, 8191])
def test_lookback_long_matches_parallel_fp64(n, causal):
    check_against(bk_core_parallel, make_inputs(2, n, 70, seed=n, device="cuda"), causal, fn=bk_core_lookback)


@pytest.mark.parametrize("causal", [True, False])
def test_lookback_carries_in_band_match_sequential(causal):
    # in the band a wrong carry (a race in the look-back) shows for many rows; 64 chains of 64 segments
    x = in_band(16, 4096, 128, seed=9, device="cuda")
    check_against(bk_core_sequential, x, causal, fn=bk_core_lookback)


def test_lookback_bench_shape_matches_two_pass_every_time():
    """The bench shape, 16 chains of 128 forward and 256 backward segments, five times: the walks differ from
    run to run, the results only by rounding."""
    x = in_band(16, 16384, 64, seed=3, device="cuda")
    for _ in range(5):
        check_against(two_pass, x, True, fn=bk_core_lookback)
