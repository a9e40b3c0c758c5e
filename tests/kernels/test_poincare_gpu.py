"""Poincare Triton kernels on CUDA at realistic shapes (skipped without a GPU)."""

import pytest
import torch
from gpu_marks import GPU_ONLY

pytestmark = GPU_ONLY


@pytest.mark.parametrize("d", [16, 64, 128])
@pytest.mark.parametrize("op", ["exp0", "log0", "mobius_add"])
def test_poincare_fp32(op, d):
    from kernels.poincare import naive as pn
    from kernels.poincare import triton as pt

    g = torch.Generator(device="cuda").manual_seed(d)
    c = torch.rand(16, 1, 1, device="cuda", generator=g) + 0.2
    x = torch.randn(4, 16, 4096, d, device="cuda", generator=g) * 0.05
    y = torch.randn(4, 16, 4096, d, device="cuda", generator=g) * 0.05
    ins = [x, y, c] if op == "mobius_add" else [x, c]
    fn = getattr(pt, op + "_triton")
    ref = getattr(pn, op)
    a = [t.clone().requires_grad_() for t in ins]
    b = [t.double().requires_grad_() for t in ins]
    oa, ob = fn(*a), ref(*b)
    w = torch.randn_like(oa)
    ga = torch.autograd.grad((oa * w).sum(), a)
    gb = torch.autograd.grad((ob * w.double()).sum(), b)
    for u, v in zip([oa, *ga], [ob, *gb], strict=False):
        err = (u.double() - v).abs().max().item()
        # the curvature gradient sums 4M rows: judge it relative to its size
        assert err <= 1e-4 * max(1.0, v.abs().max().item()), err


def test_poincare_bf16_and_dispatch():
    from kernels import poincare as P
    from kernels.poincare import naive as pn

    x = (torch.randn(8, 2048, 64, device="cuda") * 0.05).bfloat16()
    c = torch.tensor(0.5, device="cuda")
    out = P.exp0(x, c)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), pn.exp0(x.float(), c), rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(P.log0(out, c).float(), x.float(), rtol=2e-2, atol=2e-3)
