"""RMSNorm reference (kernels.rmsnorm.naive) and models.layers.norm.RMSNorm against torch.nn.RMSNorm (CPU)."""

import warnings

import pytest
import torch

from kernels.rmsnorm import default_eps, rms_norm, rms_norm_ref
from models.layers.norm import RMSNorm

# bf16 x with a float32 weight is the amp case: nn.RMSNorm warns that it cannot use its fused path
pytestmark = pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")

# (x dtype, weight dtype, rtol/atol for values and grads). bf16: one bf16 ulp is 2^-8 relative.
CASES = [
    (torch.float32, torch.float32, 1e-6),
    (torch.float64, torch.float64, 1e-12),
    (torch.bfloat16, torch.float32, 1e-2),
]


def _torch_norm(d, eps, wdtype, seed):
    m = torch.nn.RMSNorm(d, eps=eps, dtype=wdtype)
    with torch.no_grad():
        m.weight.copy_(torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 1)
    return m


@pytest.mark.parametrize("xdtype, wdtype, tol", CASES)
@pytest.mark.parametrize("d", [1, 7, 129])
@pytest.mark.parametrize("lead", [(2, 5), (3,)])
@pytest.mark.parametrize("eps", [1e-6, None])
def test_ref_matches_torch_rmsnorm(xdtype, wdtype, tol, d, lead, eps):
    m = _torch_norm(d, eps, wdtype, seed=d)
    gen = torch.Generator().manual_seed(len(lead) * 100 + d)
    x = (torch.randn(*lead, d, generator=gen, dtype=torch.float64) * 2).to(xdtype)
    gy = torch.randn(*lead, d, generator=gen, dtype=torch.float64).to(xdtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    w = m.weight.detach().clone().requires_grad_()
    y = m(xa)
    yr = rms_norm_ref(xb, w, default_eps(x) if eps is None else eps)
    assert yr.dtype == y.dtype == xdtype
    torch.testing.assert_close(yr, y, rtol=tol, atol=tol)
    gx, gw = torch.autograd.grad((y * gy).sum(), (xa, m.weight))
    gxr, gwr = torch.autograd.grad((yr * gy).sum(), (xb, w))
    assert gxr.dtype == gx.dtype and gwr.dtype == gw.dtype == wdtype
    torch.testing.assert_close(gxr, gx, rtol=tol, atol=tol)
    torch.testing.assert_close(gwr, gw, rtol=tol, atol=tol)


@pytest.mark.parametrize("xdtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_default_eps_is_torch_default(xdtype):
    """Rows of small |x|, where finfo(bf16).eps (7.8e-3) would visibly change the result."""
    x = (torch.randn(4, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1e-2).to(xdtype)
    ref = torch.nn.RMSNorm(16)(x)
    ours = RMSNorm(16)(x)
    assert ours.dtype == ref.dtype
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0.0)


def test_module_is_drop_in():
    ref = torch.nn.RMSNorm(12, eps=1e-5)
    ours = RMSNorm(12, eps=1e-5)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    assert [n for n, _ in ours.named_parameters()] == ["weight"]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert torch.equal(ours.weight, ref.weight)  # ones
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
    ours.load_state_dict(ref.state_dict())  # strict
    ref.load_state_dict(ours.state_dict())
    assert torch.equal(ours.weight, ref.weight)
    x = torch.randn(2, 3, 12, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    xb = x.bfloat16()
    torch.testing.assert_close(ours(xb), ref(xb), rtol=1e-2, atol=1e-2)
    assert RMSNorm([12]).normalized_shape == (12,)
    with pytest.raises(ValueError):
        RMSNorm((3, 4))


def test_dispatch_on_cpu_is_reference():
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    w = torch.rand(8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(rms_norm(x, w, 1e-6), rms_norm_ref(x, w, 1e-6))


def test_ref_matches_torch_fp16_input():
    """fp16 input, fp32 weight (the other amp dtype)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _torch_norm(33, 1e-6, torch.float32, seed=5)
        x = torch.randn(4, 33, generator=torch.Generator().manual_seed(6)).half()
        torch.testing.assert_close(rms_norm_ref(x, m.weight, 1e-6), m(x), rtol=1e-3, atol=1e-3)
