"""Triton RMSNorm on CUDA at model shapes, against the reference (skipped without a GPU)."""

import pytest
import torch
from gpu_marks import GPU_ONLY

pytestmark = GPU_ONLY


@pytest.mark.parametrize("d", [64, 1024, 2048, 8192])
@pytest.mark.parametrize("xdtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_matches_reference_on_cuda(d, xdtype):
    from kernels.rmsnorm.naive import rms_norm_ref
    from kernels.rmsnorm.triton import rms_norm_triton

    g = torch.Generator(device="cuda").manual_seed(d)
    x = (torch.randn(2, 333, d, device="cuda", generator=g) * 2).to(xdtype)
    w = torch.randn(d, device="cuda", generator=g) + 1
    gy = torch.randn(2, 333, d, device="cuda", generator=g).to(xdtype)
    outs = []
    for fn in (rms_norm_triton, rms_norm_ref):
        xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = fn(xa, wa, 1e-6)
        y.backward(gy)
        outs.append((y, xa.grad, wa.grad))
    tol = 1e-5 if xdtype == torch.float32 else 2e-2
    for got, want in zip(outs[0], outs[1], strict=False):
        assert got.dtype == want.dtype
        scale = float(want.float().abs().max())  # dw sums 666 rows: compare against its size, not per element
        torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol * scale)


def device_kernels(fn) -> int:
    """Device kernels (and memsets) one call of fn launches, counted by the profiler."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(e.count for e in prof.key_averages() if e.device_type == DeviceType.CUDA)


def test_rmsnorm_under_amp_is_one_kernel_forward_and_two_backward():
    """bf16 activations, fp32 weight (`amp_bf16`): the PyTorch decomposition launches several kernels per
    direction; ours one forward, and one backward plus the (P, D) -> (D,) sum of the weight gradient."""
    from models.layers.norm import RMSNorm

    norm = RMSNorm(1024).cuda()
    x = torch.randn(2, 512, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    gy = torch.randn_like(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = norm(x)
    forward = device_kernels(lambda: norm(x.detach()))
    backward = device_kernels(lambda: torch.autograd.grad(y, (x, norm.weight), gy, retain_graph=True))
    reference = device_kernels(lambda: torch.nn.functional.rms_norm(x.detach().float(), (1024,), norm.weight))
    print(f"RMSNorm kernels: forward {forward}, backward {backward}; torch fp32 forward {reference}")
    assert forward == 1 and backward <= 2
