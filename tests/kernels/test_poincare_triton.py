"""Triton Poincare maps under the Triton interpreter (CPU) against the float64 references.

TRITON_INTERPRET is read when kernels.poincare.triton is imported (at @triton.jit time): it is set
before that import.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from compile_checks import assert_compiles_like_eager  # noqa: E402

from kernels import poincare as P  # noqa: E402
from kernels.backend import backend  # noqa: E402
from kernels.poincare import naive as pn  # noqa: E402
from kernels.poincare import triton as T  # noqa: E402
from kernels.poincare.triton import exp0_triton, log0_triton, mobius_add_triton  # noqa: E402


def _close(a, b, tol=1e-4):
    """max |a - b| <= tol * max(1, max |b|)"""
    assert a.shape == b.shape
    err = (a.double() - b).abs().max().item()
    assert err <= tol * max(1.0, b.abs().max().item()), err


def _grads(fn, ref, inputs, seed=0):
    ins = [t.clone().requires_grad_() for t in inputs]
    ins64 = [t.detach().double().requires_grad_() for t in inputs]
    out, out64 = fn(*ins), ref(*ins64)
    _close(out, out64)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    g = torch.autograd.grad((out * w).sum(), ins)
    g64 = torch.autograd.grad((out64 * w.double()).sum(), ins64)
    for a, b in zip(g, g64, strict=False):
        _close(a, b)


SCALES = [0.0, 1e-4, 0.05, 0.3, 1.0, 4.0]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("d", [1, 7, 33])
def test_exp0_log0(scale, d):
    g = torch.Generator().manual_seed(d)
    x = torch.randn(3, 5, d, generator=g) * scale
    c = torch.rand(3, 1, 1, generator=g) + 0.2
    _grads(exp0_triton, pn.exp0, [x, c])
    _grads(lambda a, cc: log0_triton(a, cc), lambda a, cc: pn.log0(a, cc), [x, c])


@pytest.mark.parametrize("scale", SCALES)
def test_mobius_add(scale):
    g = torch.Generator().manual_seed(5)
    c = torch.rand(4, 1, 1, generator=g) + 0.2
    x = pn.exp0(torch.randn(4, 6, 9, generator=g) * scale, c)
    y = pn.exp0(torch.randn(4, 6, 9, generator=g) * scale, c)
    _grads(mobius_add_triton, pn.mobius_add, [x, y, c])


def test_broadcast_and_scalar_curvature():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 1, 8, generator=g) * 0.2
    y = torch.randn(2, 5, 8, generator=g) * 0.2
    c = torch.tensor(0.7)
    _grads(mobius_add_triton, pn.mobius_add, [x, y, c])
    _grads(exp0_triton, pn.exp0, [y, c])
    torch.testing.assert_close(exp0_triton(y, 0.7), pn.exp0(y, 0.7))


def test_boundary_and_origin_finite():
    c = torch.tensor(1.5, requires_grad=True)
    d = torch.randn(4, 8)
    edge = (d / d.norm(dim=-1, keepdim=True) / c.detach().sqrt() * 1.001).requires_grad_()
    zero = torch.zeros(4, 8, requires_grad=True)
    huge = (torch.randn(4, 8) * 1e4).requires_grad_()
    outs = [
        log0_triton(edge, c),
        exp0_triton(zero, c),
        log0_triton(zero, c),
        exp0_triton(huge, c),
        mobius_add_triton(edge * 0.999, edge * 0.999, c),
        mobius_add_triton(zero, zero, c),
    ]
    grads = torch.autograd.grad(sum(o.sum() for o in outs), (c, edge, zero, huge))
    for t in list(outs) + list(grads):
        assert torch.isfinite(t).all()
    # over the boundary log0 equals the clamped reference, gradient included
    _grads(lambda a, cc: log0_triton(a, cc), lambda a, cc: pn.log0(a, cc), [edge.detach(), c.detach()])


def test_identities_through_dispatch():
    g = torch.Generator().manual_seed(8)
    c = torch.tensor(0.9)
    v = torch.randn(16, 12, generator=g) * 0.5
    y = torch.randn(16, 12, generator=g) * 0.2
    with backend("triton"):
        x = P.exp0(v, c)
        torch.testing.assert_close(P.log0(x, c), v, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(P.mobius_add(-x, P.mobius_add(x, y, c), c), y, rtol=1e-4, atol=5e-5)
        torch.testing.assert_close(P.dist(x, y, c), P.dist(y, x, c), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(P.dist0(x, c), 2 * v.norm(dim=-1, keepdim=True), rtol=1e-4, atol=1e-4)


def test_half_dtype_kept():
    x = torch.randn(4, 16, dtype=torch.bfloat16) * 0.3
    out = exp0_triton(x, 0.5)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), pn.exp0(x.float(), 0.5), rtol=1e-2, atol=1e-2)


# ---- custom ops: opcheck, and torch.compile(fullgraph=True) through them --------------------------------------------


def _rows(r=5, d=6, seed=11):
    """x, y: (r, d) inside the unit ball, c: (r,) float32, g: (r, d)."""
    gen = torch.Generator().manual_seed(seed)
    x, y, g = (torch.randn(r, d, generator=gen) * 0.3 for _ in range(3))
    return x, y, torch.rand(r, generator=gen) + 0.2, g


@pytest.mark.parametrize("log, eps", [(False, 0.0), (True, 1e-5)])
def test_opcheck_rowmap(log, eps):
    x, _, c, g = _rows()
    torch.library.opcheck(T.rowmap_fwd_op, (x.requires_grad_(), c.requires_grad_(), log, eps))
    torch.library.opcheck(T.rowmap_bwd_op, (x.detach(), c.detach(), g, log, eps))


def test_opcheck_mobius_add():
    x, y, c, g = _rows()
    torch.library.opcheck(T.mobius_add_fwd_op, (x.requires_grad_(), y.requires_grad_(), c.requires_grad_()))
    torch.library.opcheck(T.mobius_add_bwd_op, (x.detach(), y.detach(), c.detach(), g))


@pytest.mark.parametrize("c_shape", [(), (3, 4, 1)])
def test_compile_rowmaps(c_shape):
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(3, 4, 7, generator=gen) * 0.4
    c = torch.rand(c_shape, generator=gen) + 0.2
    assert_compiles_like_eager(exp0_triton, torch.ops.phasebench.poincare_rowmap_fwd, [x, c])
    assert_compiles_like_eager(
        lambda a, cc: log0_triton(a, cc, eps=1e-3), torch.ops.phasebench.poincare_rowmap_fwd, [x, c]
    )


@pytest.mark.parametrize("c_shape", [(), (2, 5, 1)])
def test_compile_mobius_add_broadcast(c_shape):
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(2, 1, 8, generator=gen) * 0.2
    y = torch.randn(5, 8, generator=gen) * 0.2
    c = torch.rand(c_shape, generator=gen) + 0.2
    assert_compiles_like_eager(mobius_add_triton, torch.ops.phasebench.poincare_mobius_add_fwd, [x, y, c])


def test_compile_python_float_curvature():
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(14)) * 0.4
    assert_compiles_like_eager(lambda a: exp0_triton(a, 0.7), torch.ops.phasebench.poincare_rowmap_fwd, [x])
