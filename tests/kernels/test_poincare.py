"""Poincare-ball references: identities, limits, and boundary / origin safety (CPU)."""

import math

import pytest
import torch

from kernels.poincare import dist, dist0, exp0, log0, mobius_add
from kernels.poincare import naive as pn

D64 = torch.float64


def _pts(shape, radius, c, seed=0):
    """Random points inside the ball of curvature c at |x| <= radius / sqrt(c)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=D64)
    r = torch.rand(*shape[:-1], 1, generator=g, dtype=D64) * radius
    return x / x.norm(dim=-1, keepdim=True) * r / math.sqrt(c)


@pytest.mark.parametrize("c", [1e-3, 0.1, 1.0, 4.0])
def test_log_exp_roundtrip(c):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(64, 8, generator=g, dtype=D64) * 0.7 / math.sqrt(c)
    ct = torch.tensor(c, dtype=D64)
    torch.testing.assert_close(log0(exp0(v, ct), ct), v, rtol=1e-9, atol=1e-9)
    x = _pts((64, 8), 0.95, c)
    torch.testing.assert_close(exp0(log0(x, ct), ct), x, rtol=1e-9, atol=1e-12)


def test_exp0_closed_form():
    v = torch.tensor([[3.0, 4.0]], dtype=D64)
    c = torch.tensor(0.25, dtype=D64)
    expect = math.tanh(0.5 * 5.0) / (0.5 * 5.0) * v
    torch.testing.assert_close(exp0(v, c), expect)
    # d_c(0, exp0(u)) = 2|u| (phase8 docstring identity)
    torch.testing.assert_close(dist0(exp0(v, c), c), torch.tensor([[10.0]], dtype=D64), rtol=1e-9, atol=1e-9)


def test_per_head_curvature_broadcast():
    c = torch.tensor([0.1, 1.0, 3.0], dtype=D64).view(3, 1, 1)
    v = torch.randn(2, 3, 5, 4, dtype=D64) * 0.3
    out = exp0(v, c)
    for h in range(3):
        torch.testing.assert_close(out[:, h], exp0(v[:, h], c[h, 0, 0]))


@pytest.mark.parametrize("c", [0.05, 1.0, 2.5])
def test_dist_symmetric_zero_diag_and_triangle(c):
    ct = torch.tensor(c, dtype=D64)
    x, y, z = (_pts((32, 6), 0.9, c, seed=s) for s in (1, 2, 3))
    torch.testing.assert_close(dist(x, y, ct), dist(y, x, ct), rtol=1e-9, atol=1e-9)
    assert dist(x, x, ct).abs().max() < 1e-6
    assert (dist(x, z, ct) <= dist(x, y, ct) + dist(y, z, ct) + 1e-9).all()
    # arcosh closed form
    x2, y2 = (x * x).sum(-1, keepdim=True), (y * y).sum(-1, keepdim=True)
    d2 = ((x - y) ** 2).sum(-1, keepdim=True)
    closed = torch.acosh(1 + 2 * c * d2 / ((1 - c * x2) * (1 - c * y2))) / math.sqrt(c)
    torch.testing.assert_close(dist(x, y, ct), closed, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("c", [0.05, 1.0, 2.5])
def test_mobius_left_cancellation_and_identity(c):
    ct = torch.tensor(c, dtype=D64)
    x, y = _pts((32, 6), 0.9, c, seed=4), _pts((32, 6), 0.9, c, seed=5)
    torch.testing.assert_close(mobius_add(-x, mobius_add(x, y, ct), ct), y, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(mobius_add(torch.zeros_like(x), y, ct), y)
    torch.testing.assert_close(mobius_add(x, torch.zeros_like(y), ct), x)
    assert (mobius_add(x, y, ct).norm(dim=-1) < 1 / math.sqrt(c)).all()


def test_euclidean_limit():
    ct = torch.tensor(1e-9, dtype=D64)
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(16, 5, generator=g, dtype=D64), torch.randn(16, 5, generator=g, dtype=D64)
    torch.testing.assert_close(exp0(x, ct), x, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(log0(x, ct), x, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(mobius_add(x, y, ct), x + y, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(dist(x, y, ct), 2 * (x - y).norm(dim=-1, keepdim=True), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_no_nan_at_origin_and_boundary(dtype):
    c = torch.tensor(1.3, dtype=dtype, requires_grad=True)
    zero = torch.zeros(3, 4, dtype=dtype, requires_grad=True)
    edge_dir = torch.randn(3, 4, dtype=dtype)
    edge = (
        edge_dir / edge_dir.norm(dim=-1, keepdim=True) / c.detach().sqrt() * 1.0001
    ).requires_grad_()  # on/over the boundary
    big = (torch.randn(3, 4, dtype=dtype) * 1e3).requires_grad_()
    outs = [
        exp0(zero, c),
        log0(zero, c),
        dist0(zero, c),
        exp0(big, c),
        log0(edge, c),
        dist0(edge, c),
        mobius_add(edge, edge, c),
        mobius_add(zero, edge, c),
        dist(edge, -edge, c),
        dist(zero, zero, c),
    ]
    for o in outs:
        assert torch.isfinite(o).all()
    grads = torch.autograd.grad(sum(o.sum() for o in outs), (c, zero, edge, big))
    for gr in grads:
        assert torch.isfinite(gr).all()
    # at the origin exp0 and log0 are the identity to first order
    gz = torch.autograd.grad(exp0(zero, c).sum(), zero)[0]
    torch.testing.assert_close(gz, torch.ones_like(gz))
    gz = torch.autograd.grad(log0(zero, c).sum(), zero)[0]
    torch.testing.assert_close(gz, torch.ones_like(gz))
    # exp0 of a huge vector stays strictly inside the ball
    assert (exp0(big, c).norm(dim=-1) <= 1 / c.detach().sqrt() + 1e-6).all()


def test_log0_clamps_to_ball_radius_not_one():
    c = torch.tensor(4.0, dtype=D64)  # radius 0.5
    x = torch.tensor([[0.3, 0.0]], dtype=D64)  # inside radius 0.5, beyond nothing
    torch.testing.assert_close(log0(x, c), torch.tensor([[math.atanh(0.6) / 2.0, 0.0]], dtype=D64))
    far = torch.tensor([[0.7, 0.0]], dtype=D64)  # outside: clamped to (1 - eps)/sqrt(c)
    torch.testing.assert_close(log0(far, c), torch.tensor([[math.atanh(1 - pn.BALL_EPS) / 2.0, 0.0]], dtype=D64))


def test_gradcheck_maps():
    c = torch.tensor(0.8, dtype=D64, requires_grad=True)
    x = (_pts((4, 5), 0.8, 0.8, seed=7)).requires_grad_()
    y = (_pts((4, 5), 0.8, 0.8, seed=8)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, cc: exp0(a, cc), (x, c))
    assert torch.autograd.gradcheck(lambda a, cc: log0(a, cc), (x, c))
    assert torch.autograd.gradcheck(lambda a, b, cc: mobius_add(a, b, cc), (x, y, c))
    assert torch.autograd.gradcheck(lambda a, b, cc: dist(a, b, cc), (x, y, c))


def test_half_precision_dtype_kept():
    v = torch.randn(4, 8, dtype=torch.bfloat16)
    c = torch.tensor(0.5)
    for o in (exp0(v, c), log0(v * 0.1, c), mobius_add(v * 0.1, v * 0.1, c)):
        assert o.dtype == torch.bfloat16
