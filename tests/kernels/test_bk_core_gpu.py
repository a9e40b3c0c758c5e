"""Triton BK-Core compiled on CUDA, up to N = 16384, against the float64 references (skipped without a GPU).

Run in a pytest process of its own: the interpreter test modules set TRITON_INTERPRET=1 at import.
"""
import os

import pytest
import torch

from kernels.backend import backend
from kernels.bk_core import bk_core, bk_core_parallel, bk_core_sequential

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpreted process: run GPU tests separately"),
]


def make_inputs(b, n, c, seed=0):
    gen = torch.Generator().manual_seed(seed)
    v = 5.0 * torch.tanh(2.0 * torch.randn(b, n, c, generator=gen, dtype=torch.float64))
    h0 = 0.5 * torch.randn(c, generator=gen, dtype=torch.float64)
    beta = 1.0 + 0.5 * torch.randn(c, generator=gen, dtype=torch.float64)
    z_re = torch.linspace(-1.5, 1.5, c, dtype=torch.float64)
    z_im = 0.05 + 0.5 * torch.rand(c, generator=gen, dtype=torch.float64)
    return [t.cuda() for t in (v, h0, beta, z_re, z_im)]


def check_against(reference, x64, causal, chunk, tol=1e-4):
    """Outputs and all five input gradients of bk_core_triton (float32) vs `reference` (float64)."""
    from kernels.bk_core.triton import bk_core_triton

    gen = torch.Generator().manual_seed(123)
    w_re = torch.randn(x64[0].shape, generator=gen, dtype=torch.float64).cuda()
    w_im = torch.randn(x64[0].shape, generator=gen, dtype=torch.float64).cuda()
    xr = [t.clone().requires_grad_() for t in x64]
    r_re, r_im = reference(*xr, causal=causal)
    ref_grads = torch.autograd.grad((r_re * w_re).sum() + (r_im * w_im).sum(), xr, allow_unused=True)
    xt = [t.float().requires_grad_() for t in x64]
    o_re, o_im = bk_core_triton(*xt, causal=causal, chunk=chunk)
    scale = torch.complex(r_re, r_im).abs().max()
    torch.testing.assert_close(o_re.double() / scale, r_re.detach() / scale, rtol=tol, atol=tol)
    torch.testing.assert_close(o_im.double() / scale, r_im.detach() / scale, rtol=tol, atol=tol)
    grads = torch.autograd.grad((o_re * w_re.float()).sum() + (o_im * w_im.float()).sum(), xt)
    for name, got, ref in zip(("v", "h0", "beta", "z_re", "z_im"), grads, ref_grads):
        ref = torch.zeros_like(got, dtype=torch.float64) if ref is None else ref
        gscale = max(ref.abs().max().item(), 1.0)
        torch.testing.assert_close(got.double() / gscale, ref / gscale, rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n,chunk", [(1, None), (7, 4), (63, 8), (130, 12), (1000, None), (4096, 64)])
def test_matches_sequential(n, chunk, causal):
    check_against(bk_core_sequential, make_inputs(2, n, 5, seed=n), causal, chunk)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n,chunk", [(16384, None), (16384, 256), (8191, 128)])
def test_long_matches_parallel_fp64(n, chunk, causal):
    check_against(bk_core_parallel, make_inputs(2, n, 70, seed=n), causal, chunk)


def test_bench_shape_runs_and_is_bounded():
    x = [t.float() for t in make_inputs(16, 16384, 64, seed=3)]
    x[0].requires_grad_()
    g_re, g_im = bk_core(*x)
    assert torch.all(torch.complex(g_re, g_im).abs() <= 1.0 / x[4] * (1 + 1e-5))
    (g_re.sum() + g_im.sum()).backward()
    assert torch.isfinite(x[0].grad).all()


def test_dispatch_on_cuda():
    x = [t.float() for t in make_inputs(2, 300, 8, seed=1)]
    with backend("auto"):
        got = bk_core(*x)
    with backend("torch"):
        ref = bk_core(*x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
