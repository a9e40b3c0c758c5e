"""Triton diag_scan under the Triton interpreter (CPU): outputs and gradients against the oracle.

TRITON_INTERPRET is read when kernels.scan.triton is imported (at @triton.jit time), so it is set
before that import; run this module in a pytest process that has not imported the kernel for CUDA.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from kernels.backend import backend  # noqa: E402
from kernels.scan import diag_scan, diag_scan_sequential  # noqa: E402
from kernels.scan.triton import _scan_bwd_op, _scan_fwd_op, diag_scan_triton  # noqa: E402


def _check(a, b, reverse, tol=1e-4, **blocks):
    a = a.clone().requires_grad_()
    b = b.clone().requires_grad_()
    w = torch.randn(torch.broadcast_shapes(a.shape, b.shape), generator=torch.Generator().manual_seed(9))
    h = diag_scan_triton(a, b, reverse, **blocks)
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    hr = diag_scan_sequential(a64, b64, reverse)
    torch.testing.assert_close(h.double(), hr, rtol=tol, atol=tol)
    g = torch.autograd.grad((h * w).sum(), (a, b))
    gr = torch.autograd.grad((hr * w.double()).sum(), (a64, b64))
    for x, y in zip(g, gr, strict=False):
        assert x.shape == y.shape
        torch.testing.assert_close(x.double(), y, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [1, 7, 63, 130])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("block_t,block_r", [(4, 2), (16, 1), (64, 4)])
def test_triton_matches_oracle(n, reverse, block_t, block_r):
    g = torch.Generator().manual_seed(n)
    a = torch.rand(2, 3, n, generator=g) * 1.1
    b = torch.randn(2, 3, n, generator=g)
    _check(a, b, reverse, block_t=block_t, block_r=block_r)


@pytest.mark.parametrize("reverse", [False, True])
def test_triton_default_blocks_and_zero_decay(reverse):
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 5, 300, generator=g)
    a[..., ::13] = 0.0
    a[..., 5::7] = 1e-30
    b = torch.randn(1, 5, 300, generator=g)
    _check(a, b, reverse)


def test_triton_broadcast_decay_gradient_is_reduced():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(1, 3, 20, generator=g)  # shared over the batch
    b = torch.randn(4, 3, 20, generator=g)
    _check(a, b, False, block_t=8, block_r=2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_inputs(dtype):
    g = torch.Generator().manual_seed(3)
    a = torch.rand(2, 4, 70, generator=g).to(dtype)
    b = torch.randn(2, 4, 70, generator=g).to(dtype)
    with backend("triton"):
        h = diag_scan(a, b)
    assert h.dtype == dtype
    torch.testing.assert_close(h.double(), diag_scan_sequential(a.double(), b.double()), rtol=2e-2, atol=2e-2)


def test_dispatch_uses_triton_under_interpreter(monkeypatch):
    import kernels.scan.triton as st

    calls = []
    orig = st.diag_scan_triton
    monkeypatch.setattr(st, "diag_scan_triton", lambda *a, **k: calls.append(1) or orig(*a, **k))
    a, b = torch.rand(1, 2, 5), torch.randn(1, 2, 5)
    with backend("triton"):
        diag_scan(a, b)
    with backend("torch"):
        diag_scan(a, b)
    assert calls == [1]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("block_t,block_r", [(8, 2), (None, None)])
def test_custom_ops_opcheck(reverse, block_t, block_r):
    """Schema, autograd registration, fake impl and AOT dispatch (static and dynamic) of both ops."""
    g = torch.Generator().manual_seed(4)
    a = torch.rand(3, 20, generator=g).requires_grad_()
    b = torch.randn(3, 20, generator=g).requires_grad_()
    torch.library.opcheck(_scan_fwd_op, (a, b, reverse, block_t, block_r))
    # the backward op has no autograd formula of its own (no double backward): plain inputs
    h = _scan_fwd_op(a.detach(), b.detach(), reverse, block_t, block_r)
    dh = torch.randn(3, 20, generator=g)
    torch.library.opcheck(_scan_bwd_op, (a.detach(), h, dh, reverse, block_t, block_r))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("a_shape", [(2, 2, 1), (1, 2, 300)])
def test_compile_fullgraph_matches_eager(reverse, a_shape):
    """Dynamo must see the kernel as one opaque op (fullgraph raises on a graph break); default blocks, 2 tiles."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(5)
    a = (torch.rand(*a_shape, generator=g) * 0.2 + 0.8).requires_grad_()
    b = torch.randn(2, 2, 300, generator=g).requires_grad_()
    w = torch.randn(2, 2, 300, generator=g)
    compiled = torch.compile(diag_scan_triton, fullgraph=True, backend="aot_eager")
    h_eager = diag_scan_triton(a, b, reverse)
    h_comp = compiled(a, b, reverse)
    torch.testing.assert_close(h_comp, h_eager, rtol=1e-4, atol=1e-4)
    g_eager = torch.autograd.grad((h_eager * w).sum(), (a, b))
    g_comp = torch.autograd.grad((h_comp * w).sum(), (a, b))
    for x, y, t in zip(g_comp, g_eager, (a, b), strict=False):
        assert x.shape == y.shape == t.shape
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
    # eager against the oracle too, so that both paths agreeing on a wrong answer fails
    hr = diag_scan_sequential(a.detach().double(), b.detach().double(), reverse)
    torch.testing.assert_close(h_eager.double(), hr, rtol=1e-4, atol=1e-4)
