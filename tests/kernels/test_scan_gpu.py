"""diag_scan Triton kernel on CUDA at realistic shapes (skipped without a GPU).

Run in a pytest process of its own: the interpreter test modules set TRITON_INTERPRET=1 at import.
"""

import pytest
import torch
from gpu_marks import GPU_ONLY

pytestmark = GPU_ONLY


def _run(a, b, reverse):
    from kernels.scan.triton import diag_scan_triton

    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    h = diag_scan_triton(a, b, reverse)
    w = torch.randn_like(h, dtype=torch.float32)
    ga, gb = torch.autograd.grad((h.float() * w).sum(), (a, b))
    return h, ga, gb, w


@pytest.mark.parametrize("n", [1, 130, 1024, 4096, 16384])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_fp32_against_reference(n, reverse):
    from kernels.scan import diag_scan_ref

    g = torch.Generator(device="cuda").manual_seed(n)
    a = torch.rand(2, 96, n, device="cuda", generator=g) * 0.2 + 0.8
    b = torch.randn(2, 96, n, device="cuda", generator=g)
    h, ga, gb, w = _run(a, b, reverse)
    a64, b64 = a.double().requires_grad_(), b.double().requires_grad_()
    hr = diag_scan_ref(a64, b64, reverse, chunk_size=128)
    gar, gbr = torch.autograd.grad((hr * w.double()).sum(), (a64, b64))
    for x, y in ((h, hr), (ga, gar), (gb, gbr)):
        err = (x.double() - y).abs().max().item()
        assert err <= 1e-4 * max(1.0, y.abs().max().item()), err


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_scan_half_inputs(dtype):
    from kernels.scan import diag_scan_ref

    a = (torch.rand(4, 256, 16384, device="cuda") * 0.1 + 0.9).to(dtype)
    b = torch.randn(4, 256, 16384, device="cuda").to(dtype)
    h, ga, gb, w = _run(a, b, False)
    assert h.dtype == dtype and ga.dtype == dtype
    hr = diag_scan_ref(a.float(), b.float())
    torch.testing.assert_close(h.float(), hr, rtol=2e-2, atol=2e-2 * hr.abs().max().item() / 10)


def test_scan_dispatch_on_cuda():
    from kernels.scan import diag_scan, diag_scan_ref

    a = torch.rand(1, 8, 1000, device="cuda")
    b = torch.randn(1, 8, 1000, device="cuda")
    torch.testing.assert_close(diag_scan(a, b), diag_scan_ref(a, b), rtol=1e-4, atol=1e-4)
