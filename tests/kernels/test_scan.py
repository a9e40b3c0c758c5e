"""diag_scan references: the vectorised chunked form against the sequential oracle (CPU, float64)."""

import pytest
import torch

from kernels.scan import diag_scan, diag_scan_ref, diag_scan_sequential


@pytest.mark.parametrize("n", [1, 7, 63, 130])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_ref_matches_sequential(n, reverse, chunk):
    g = torch.Generator().manual_seed(n + 7 * chunk)
    a = torch.rand(2, 3, n, generator=g, dtype=torch.float64) * 1.2
    b = torch.randn(2, 3, n, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        diag_scan_ref(a, b, reverse, chunk_size=chunk), diag_scan_sequential(a, b, reverse), rtol=1e-12, atol=1e-12
    )


def test_sequential_definition():
    a = torch.tensor([[[0.5, 2.0, 0.0, 3.0]]], dtype=torch.float64)
    b = torch.tensor([[[1.0, 1.0, 4.0, 1.0]]], dtype=torch.float64)
    assert diag_scan_sequential(a, b).tolist() == [[[1.0, 3.0, 4.0, 13.0]]]
    # reverse: h3 = 1, h2 = 0*1 + 4 = 4, h1 = 2*4 + 1 = 9, h0 = 0.5*9 + 1 = 5.5
    assert diag_scan_sequential(a, b, reverse=True).tolist() == [[[5.5, 9.0, 4.0, 1.0]]]


def test_tiny_and_zero_decay_exact():
    # a spanning many orders of magnitude, including exact zeros: a cumprod/division form would fail here
    g = torch.Generator().manual_seed(0)
    a = 10.0 ** (-30 * torch.rand(1, 4, 300, generator=g, dtype=torch.float64))
    a[..., ::17] = 0.0
    b = torch.randn(1, 4, 300, generator=g, dtype=torch.float64)
    for rev in (False, True):
        torch.testing.assert_close(diag_scan_ref(a, b, rev), diag_scan_sequential(a, b, rev), rtol=1e-12, atol=1e-12)


def test_ref_gradients_match_sequential():
    g = torch.Generator().manual_seed(3)
    a = (torch.rand(2, 3, 37, generator=g, dtype=torch.float64) * 1.1).requires_grad_()
    b = torch.randn(2, 3, 37, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 37, generator=g, dtype=torch.float64)
    for rev in (False, True):
        ga = torch.autograd.grad((diag_scan_ref(a, b, rev, chunk_size=8) * w).sum(), (a, b))
        gs = torch.autograd.grad((diag_scan_sequential(a, b, rev) * w).sum(), (a, b))
        for x, y in zip(ga, gs, strict=False):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dispatch_dtype_and_cpu_reference(dtype):
    a = torch.rand(2, 3, 50).to(dtype)
    b = torch.randn(2, 3, 50).to(dtype)
    h = diag_scan(a, b)
    assert h.dtype == dtype
    torch.testing.assert_close(h.float(), diag_scan_sequential(a.double(), b.double()).float(), rtol=2e-2, atol=2e-2)
