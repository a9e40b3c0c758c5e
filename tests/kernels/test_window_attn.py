"""window_hyp_attn references: blocked O(N * window) form against the dense Mobius-distance oracle."""

import pytest
import torch

from kernels.poincare import naive as pn
from kernels.window_attn import pair_dist, window_hyp_attn_dense, window_hyp_attn_ref


def _inputs(n, d=6, h=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, h, n, d, generator=g, dtype=dtype) for _ in range(3))
    c = (torch.rand(h, generator=g, dtype=dtype) + 0.2).to(dtype)
    s = (torch.rand(h, generator=g, dtype=dtype) + 0.5).to(dtype)
    return q, k, v, c, s


def test_pair_dist_is_mobius_distance():
    g = torch.Generator().manual_seed(2)
    c = torch.tensor(0.7, dtype=torch.float64)
    x = pn.exp0(torch.randn(10, 4, generator=g, dtype=torch.float64), c)
    y = pn.exp0(torch.randn(12, 4, generator=g, dtype=torch.float64), c)
    d = pair_dist((x * x).sum(-1, keepdim=True), (y * y).sum(-1)[None], x @ y.T, c)
    torch.testing.assert_close(d, pn.dist(x[:, None], y[None], c)[..., 0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n", [1, 7, 63, 130])
@pytest.mark.parametrize("window", [1, 4, 16, 64, 200])
def test_ref_matches_dense(n, window):
    q, k, v, c, s = (t.requires_grad_() for t in _inputs(n, seed=n + window))
    w = torch.randn(2, 2, n, 6, dtype=torch.float64)
    o_ref = window_hyp_attn_ref(q, k, v, c, s, window)
    o_den = window_hyp_attn_dense(q, k, v, c, s, window)
    torch.testing.assert_close(o_ref, o_den, rtol=1e-9, atol=1e-9)
    g1 = torch.autograd.grad((o_ref * w).sum(), (q, k, v, c, s))
    g2 = torch.autograd.grad((o_den * w).sum(), (q, k, v, c, s))
    for a, b in zip(g1, g2, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8)


def test_window_one_is_identity_on_values():
    q, k, v, c, s = _inputs(20, seed=3)
    torch.testing.assert_close(window_hyp_attn_ref(q, k, v, c, s, 1), v)


def test_scores_follow_distance():
    # query 1 coincides with key 0 and is far from key 1: key 0 must dominate
    c = torch.tensor([1.0], dtype=torch.float64)
    s = torch.tensor([3.0], dtype=torch.float64)
    q = torch.tensor([[[[0.0, 0.0], [0.5, 0.0]]]], dtype=torch.float64)
    k = torch.tensor([[[[0.5, 0.0], [-0.5, 0.0]]]], dtype=torch.float64)
    v = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    o = window_hyp_attn_ref(q, k, v, c, s, 2)
    d = pn.dist(pn.exp0(q[0, 0, 1], c), pn.exp0(k[0, 0], c), c)[:, 0]
    p = torch.softmax(-3.0 * d, 0)
    torch.testing.assert_close(o[0, 0, 1], p[0] * v[0, 0, 0] + p[1] * v[0, 0, 1])
    assert d[0] < 1e-5 and p[0] > 0.99
