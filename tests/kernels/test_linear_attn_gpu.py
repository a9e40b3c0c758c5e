"""causal_linear_attn Triton kernel on CUDA at realistic shapes (skipped without a GPU)."""

from functools import partial

import pytest
import torch
from gpu_marks import GPU_ONLY

pytestmark = GPU_ONLY


def _grads(fn, q, k, v, w):
    ins = [t.clone().requires_grad_() for t in (q, k, v)]
    o = fn(*ins)
    return [o] + list(torch.autograd.grad((o.float() * w).sum(), ins))


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("backward", ["sequential", "chunked"])
@pytest.mark.parametrize("n,d", [(130, 64), (4096, 64), (2048, 128)])
def test_linear_attn_fp32(n, d, backward):
    from kernels.linear_attn import causal_linear_attn_chunked
    from kernels.linear_attn.triton import causal_linear_attn_triton

    g = torch.Generator(device="cuda").manual_seed(n)
    q, k, v = (torch.randn(2, 3, n, d, device="cuda", generator=g) for _ in range(3))
    w = torch.randn(2, 3, n, d, device="cuda", generator=g)
    got = _grads(partial(causal_linear_attn_triton, backward=backward), q, k, v, w)
    ref = _grads(causal_linear_attn_chunked, q.double(), k.double(), v.double(), w.double())
    for a, b in zip(got, ref, strict=False):
        err = (a.double() - b).abs().max().item()
        assert err <= 1e-4 * max(1.0, b.abs().max().item()), err


@pytest.mark.parametrize("backward", ["sequential", "chunked"])
@pytest.mark.parametrize("n,d", [(16384, 64), (4096, 128), (16384, 128)])
def test_linear_attn_bf16(n, d, backward):
    from kernels.linear_attn import causal_linear_attn_chunked
    from kernels.linear_attn.triton import causal_linear_attn_triton

    g = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(1, 4, n, d, device="cuda", generator=g).bfloat16() for _ in range(3))
    w = torch.randn(1, 4, n, d, device="cuda", generator=g)
    got = _grads(partial(causal_linear_attn_triton, backward=backward), q, k, v, w)
    ref = _grads(causal_linear_attn_chunked, q.float(), k.float(), v.float(), w)
    assert got[0].dtype == torch.bfloat16
    for a, b in zip(got, ref, strict=False):
        assert _rel(a, b) < 2e-2


def test_linear_attn_dispatch_on_cuda():
    from kernels.linear_attn import causal_linear_attn, causal_linear_attn_chunked

    q, k, v = (torch.randn(1, 2, 300, 32, device="cuda") for _ in range(3))
    torch.testing.assert_close(causal_linear_attn(q, k, v), causal_linear_attn_chunked(q, k, v), rtol=1e-4, atol=1e-4)
