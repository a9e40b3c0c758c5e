"""BK-Core: sequential reference, explicit inverse, parallel scan and its exact adjoint (CPU)."""

from __future__ import annotations

import pytest
import torch

from kernels.backend import backend
from kernels.bk_core import bk_core, bk_core_dense, bk_core_parallel, bk_core_sequential
from kernels.bk_core.parallel import linear_scan, mobius_prefix
from models.layers.bk_core import BKCore


def make_inputs(b, n, c, dtype=torch.float64, seed=0, eta_min=0.05):
    gen = torch.Generator().manual_seed(seed)
    v = 5.0 * torch.tanh(2.0 * torch.randn(b, n, c, generator=gen, dtype=dtype))
    h0 = 0.5 * torch.randn(c, generator=gen, dtype=dtype)
    beta = 1.0 + 0.5 * torch.randn(c, generator=gen, dtype=dtype)
    z_re = torch.linspace(-1.5, 1.5, c, dtype=dtype)
    z_im = eta_min + 0.5 * torch.rand(c, generator=gen, dtype=dtype)
    return v, h0, beta, z_re, z_im


def as_complex(pair):
    return torch.complex(pair[0].to(torch.float64), pair[1].to(torch.float64))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000, 4096])
def test_parallel_matches_sequential_fp64(n, causal):
    x = make_inputs(2, n, 3, seed=n)
    ref = as_complex(bk_core_sequential(*x, causal=causal))
    out = as_complex(bk_core_parallel(*x, causal=causal))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_continued_fraction_is_leading_block_inverse(n):
    x = make_inputs(2, n, 3, seed=10 + n)
    torch.testing.assert_close(
        as_complex(bk_core_sequential(*x, causal=True)),
        as_complex(bk_core_dense(*x, causal=True)),
        rtol=1e-11,
        atol=1e-12,
    )


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_bidirectional_is_full_inverse_diagonal(n):
    x = make_inputs(2, n, 3, seed=20 + n)
    torch.testing.assert_close(
        as_complex(bk_core_sequential(*x, causal=False)),
        as_complex(bk_core_dense(*x, causal=False)),
        rtol=1e-11,
        atol=1e-12,
    )


def test_dense_by_hand():
    # N = 2, one channel: T - z = [[a1, b], [b, a2]]; causal g_2 = a1 / (a1 a2 - b^2), bidirectional g_1 = a2 / det.
    v = torch.tensor([[[0.3], [-0.7]]], dtype=torch.float64)
    h0, beta = torch.tensor([0.1], dtype=torch.float64), torch.tensor([0.8], dtype=torch.float64)
    z_re, z_im = torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.25], dtype=torch.float64)
    a1, a2 = complex(0.3 + 0.1 - 0.2, -0.25), complex(-0.7 + 0.1 - 0.2, -0.25)
    det = a1 * a2 - 0.64
    for fn in (bk_core_sequential, bk_core_dense, bk_core_parallel):
        causal = as_complex(fn(v, h0, beta, z_re, z_im, causal=True))[0, :, 0]
        bidir = as_complex(fn(v, h0, beta, z_re, z_im, causal=False))[0, :, 0]
        assert abs(causal[0].item() - 1 / a1) < 1e-14 and abs(causal[1].item() - a1 / det) < 1e-14
        assert abs(bidir[0].item() - a2 / det) < 1e-14 and abs(bidir[1].item() - a1 / det) < 1e-14


def test_mobius_scan_order():
    # Non-commuting steps: a scan that composed in the wrong order would differ from the sweep.
    a = torch.complex(
        torch.tensor([[[3.0], [-0.5], [0.25], [2.0], [-4.0]]], dtype=torch.float64),
        torch.full((1, 5, 1), -0.1, dtype=torch.float64),
    )
    b2 = torch.tensor([1.7], dtype=torch.float64)
    g, expect = None, []
    for t in range(5):
        g = 1 / (a[0, t, 0] - (0 if g is None else b2[0] * g))
        expect.append(g)
    torch.testing.assert_close(mobius_prefix(a, b2)[0, :, 0], torch.stack(expect), rtol=1e-13, atol=0)


def test_linear_scan():
    gen = torch.Generator().manual_seed(1)
    c, d = (
        torch.randn(2, 37, 3, generator=gen, dtype=torch.float64),
        torch.randn(2, 37, 3, generator=gen, dtype=torch.float64),
    )
    x, fwd = torch.zeros(2, 3, dtype=torch.float64), []
    for t in range(37):
        x = c[:, t] * x + d[:, t]
        fwd.append(x)
    torch.testing.assert_close(linear_scan(c, d), torch.stack(fwd, 1))
    x, rev = torch.zeros(2, 3, dtype=torch.float64), []
    for t in reversed(range(37)):
        x = c[:, t] * x + d[:, t]
        rev.append(x)
    torch.testing.assert_close(linear_scan(c, d, reverse=True), torch.stack(rev[::-1], 1))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n", [1, 2, 6, 17])
def test_gradcheck_parallel(n, causal):
    x = [t.clone().requires_grad_() for t in make_inputs(2, n, 3, seed=30 + n)]
    assert torch.autograd.gradcheck(lambda *a: bk_core_parallel(*a, causal=causal), x, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("causal", [True, False])
def test_parallel_gradients_match_sequential_autograd(causal):
    base = make_inputs(2, 300, 4, seed=5)
    gen = torch.Generator().manual_seed(9)
    w_re, w_im = (
        torch.randn(2, 300, 4, generator=gen, dtype=torch.float64),
        torch.randn(2, 300, 4, generator=gen, dtype=torch.float64),
    )
    grads = []
    for fn in (bk_core_sequential, bk_core_parallel):
        x = [t.clone().requires_grad_() for t in base]
        g_re, g_im = fn(*x, causal=causal)
        ((g_re * w_re).sum() + (g_im * w_im).sum()).backward()
        grads.append([t.grad for t in x])
    for got, ref in zip(grads[1], grads[0], strict=False):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("causal", [True, False])
def test_bounded_by_inverse_eta(causal):
    x = make_inputs(3, 2000, 5, seed=3, eta_min=1e-3)
    g = as_complex(bk_core_parallel(*x, causal=causal))
    assert torch.all(g.abs() <= (1.0 / x[4]) * (1 + 1e-12))
    assert torch.all(g.imag > 0)


@pytest.mark.parametrize("causal", [True, False])
def test_fp32_parallel_long_sequence(causal):
    x64 = make_inputs(1, 16384, 2, seed=4)
    ref = as_complex(bk_core_sequential(*x64, causal=causal)) if causal else None
    if ref is None:  # the bidirectional reference from the float64 scan (itself checked against the sweep above)
        ref = as_complex(bk_core_parallel(*x64, causal=False))
    out = as_complex(bk_core_parallel(*(t.float() for t in x64), causal=causal))
    rel = ((out - ref).abs() / ref.abs()).max().item()
    assert rel < 1e-4, rel


def test_fp32_parallel_gradients_long():
    x64 = make_inputs(1, 4096, 2, seed=6)
    grads = []
    for dtype in (torch.float64, torch.float32):
        x = [t.to(dtype).detach().requires_grad_() for t in x64]
        g_re, g_im = bk_core_parallel(*x)
        (g_re.sum() + 0.5 * g_im.sum()).backward()
        grads.append([t.grad.double() for t in x])
    for got, ref in zip(grads[1], grads[0], strict=False):
        assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-4


def test_public_dispatch_dtypes():
    x = make_inputs(2, 33, 4, dtype=torch.float32)
    with backend("torch"):
        out = bk_core(*x)
        assert out[0].dtype == torch.float32 and out[0].shape == (2, 33, 4)
        half = bk_core(x[0].to(torch.bfloat16), *x[1:])
        assert half[0].dtype == torch.float32
        torch.testing.assert_close(half[0], bk_core(x[0].to(torch.bfloat16).float(), *x[1:])[0])
        d = bk_core(*(t.double() for t in x))
        assert d[0].dtype == torch.float64
        torch.testing.assert_close(as_complex(out), as_complex(d), rtol=1e-4, atol=1e-5)


def test_module_forward_backward():
    torch.manual_seed(0)
    for causal in (True, False):
        m = BKCore(16, 6, causal=causal)
        x = torch.randn(2, 40, 16)
        g_re, g_im = m(x)
        assert g_re.shape == g_im.shape == (2, 40, 6)
        eta = m.eta()
        assert torch.all(eta > 0.09) and torch.all(eta < 0.51)
        assert torch.all(torch.complex(g_re, g_im).abs() <= 1 / eta + 1e-4)
        v = m.potentials(x)
        assert v.abs().max() < m.v_max
        ref = as_complex(bk_core_sequential(v.double(), m.h0, m.beta, m.e, eta, causal=causal))
        torch.testing.assert_close(as_complex((g_re, g_im)), ref, rtol=1e-4, atol=1e-5)
        (g_re.square().sum() + g_im.sum()).backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
