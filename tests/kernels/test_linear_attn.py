"""causal_linear_attn references: chunked O(N) form against the N x N definition (CPU, float64)."""

import pytest
import torch
import torch.nn.functional as F
from causality import LENGTHS, assert_exactly_causal

from kernels.linear_attn import causal_linear_attn, causal_linear_attn_chunked, causal_linear_attn_quadratic


def _inputs(n, dk=5, dv=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 2, n, dk, generator=g, dtype=dtype)
    k = torch.randn(2, 2, n, dk, generator=g, dtype=dtype)
    v = torch.randn(2, 2, n, dv, generator=g, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("n", [1, 7, 63, 130])
@pytest.mark.parametrize("chunk", [1, 16, 64])
def test_chunked_matches_quadratic(n, chunk):
    q, k, v = (t.requires_grad_() for t in _inputs(n, seed=n))
    w = torch.randn(2, 2, n, 3, dtype=torch.float64)
    oc = causal_linear_attn_chunked(q, k, v, chunk_size=chunk)
    oq = causal_linear_attn_quadratic(q, k, v)
    torch.testing.assert_close(oc, oq, rtol=1e-11, atol=1e-11)
    gc = torch.autograd.grad((oc * w).sum(), (q, k, v))
    gq = torch.autograd.grad((oq * w).sum(), (q, k, v))
    for x, y in zip(gc, gq, strict=False):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", LENGTHS)
def test_chunked_is_exactly_causal_across_chunks(n, dtype):
    """No rounding of a later token reaches an earlier one (the prefix was once cumsum - x)."""
    q, k, v = _inputs(n, seed=n, dtype=dtype)
    assert_exactly_causal(lambda *x: causal_linear_attn_chunked(*x, chunk_size=16), [q, k, v], chunk=16)


def test_quadratic_is_the_definition():
    q, k, v = _inputs(9, seed=1)

    def phi(x):
        return F.elu(x) + 1

    o = torch.empty(2, 2, 9, 3, dtype=torch.float64)
    for t in range(9):
        fq = phi(q[:, :, t])
        S = torch.einsum("bhsk,bhsv->bhkv", phi(k[:, :, : t + 1]), v[:, :, : t + 1])
        z = phi(k[:, :, : t + 1]).sum(2)
        o[:, :, t] = torch.einsum("bhk,bhkv->bhv", fq, S) / ((fq * z).sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(causal_linear_attn_quadratic(q, k, v), o, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dispatch_cpu(dtype):
    q, k, v = _inputs(40, dtype=dtype)
    o = causal_linear_attn(q, k, v)
    assert o.dtype == dtype and o.shape == (2, 2, 40, 3)
    ref = causal_linear_attn_quadratic(q.double(), k.double(), v.double())
    torch.testing.assert_close(o.double(), ref, rtol=3e-2, atol=3e-2)
