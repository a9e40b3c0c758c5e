"""Causal sliding-window hyperbolic attention, pure PyTorch.

q, k, v: (B, H, N, D) tangent vectors at the origin; c: (H,) curvature > 0; scale: (H,) > 0.
q and k enter the ball with exp0 (per-head c); for s in (t - window, t]:

    score(t, s) = -scale_h * d_c(exp0(q_t), exp0(k_s)),  p = softmax_s(score),  o_t = sum_s p_ts v_s

The distance is evaluated from the Gram entries only (|x|^2, |y|^2, <x,y>), which is what the Triton
kernel does too:

    |(-x) (+) y|^2 = |x - y|^2 / (1 - 2c<x,y> + c^2 |x|^2 |y|^2)
    d_c(x, y) = (2/sqrt c) artanh(sqrt(c) |(-x) (+) y|)

`window_hyp_attn_ref` works in blocks of `window` queries against the 2 * window keys that can reach
them: O(N * window) memory. `window_hyp_attn_dense` builds the full N x N masked score with the
Mobius-addition distance of kernels.poincare (test oracle).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.poincare import naive as pn

Z2_MIN = 1e-12  # floor of sqrt(c)^2 |(-x)(+)y|^2: keeps the gradient finite when x == y
DEN_MIN = 1e-15


def pair_dist(x2: torch.Tensor, y2: torch.Tensor, xy: torch.Tensor, c: torch.Tensor, eps: float = pn.BALL_EPS):
    """d_c from Gram entries; x2 (..., M, 1), y2 (..., 1, K), xy (..., M, K), c broadcastable -> (..., M, K)."""
    num2 = (x2 + y2 - 2.0 * xy).clamp_min(0.0)
    den = (1.0 - 2.0 * c * xy + c * c * x2 * y2).clamp_min(DEN_MIN)
    z = (c * num2 / den).clamp_min(Z2_MIN).sqrt().clamp_max(1.0 - eps)
    return 2.0 / c.sqrt() * torch.atanh(z)


def _prep(q, k, v, c, scale):
    dt = pn.compute_dtype(q, k, v)
    H = q.shape[1]
    ch = c.to(device=q.device, dtype=dt).reshape(1, H, 1, 1)
    sh = scale.to(device=q.device, dtype=dt).reshape(1, H, 1, 1)
    qb = pn.exp0(q.to(dt), ch)
    kb = pn.exp0(k.to(dt), ch)
    return dt, ch, sh, qb, kb, v.to(dt)


def window_hyp_attn_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, c: torch.Tensor, scale: torch.Tensor, window: int = 64
) -> torch.Tensor:
    """Blocked reference. q, k, v: (B, H, N, D); c, scale: (H,) -> o: (B, H, N, D) in v's dtype."""
    Bsz, H, n, D = q.shape
    if n == 0:
        return v.clone()
    dt, ch, sh, qb, kb, vf = _prep(q, k, v, c, scale)
    L = max(1, min(window, n))
    W = min(window, n)  # a window longer than the sequence is the full causal prefix
    nc = -(-n // L)
    pad = nc * L - n
    if pad:
        qb, kb, vf = (F.pad(t, (0, 0, 0, pad)) for t in (qb, kb, vf))
    qb = qb.reshape(Bsz, H, nc, L, D)
    kb = kb.reshape(Bsz, H, nc, L, D)
    vf = vf.reshape(Bsz, H, nc, L, -1)

    def with_prev(t):  # (B, H, nc, L, X) -> (B, H, nc, 2L, X): previous block then this one
        prev = F.pad(t, (0, 0, 0, 0, 1, 0))[:, :, :-1]
        return torch.cat([prev, t], dim=3)

    k2, v2 = with_prev(kb), with_prev(vf)
    x2 = (qb * qb).sum(-1, keepdim=True)  # (B, H, nc, L, 1)
    y2 = (k2 * k2).sum(-1).unsqueeze(-2)  # (B, H, nc, 1, 2L)
    xy = qb @ k2.transpose(-1, -2)  # (B, H, nc, L, 2L)
    c5, s5 = ch.unsqueeze(2), sh.unsqueeze(2)
    d = pair_dist(x2, y2, xy, c5)
    t_idx = (torch.arange(nc, device=q.device) * L).view(nc, 1, 1) + torch.arange(L, device=q.device).view(1, L, 1)
    s_idx = (torch.arange(nc, device=q.device) * L - L).view(nc, 1, 1) + torch.arange(2 * L, device=q.device).view(
        1, 1, 2 * L
    )
    valid = (s_idx <= t_idx) & (s_idx > t_idx - W) & (s_idx >= 0)
    score = (-s5 * d).masked_fill(~valid, float("-inf"))
    p = torch.softmax(score, dim=-1)
    o = p @ v2
    return o.reshape(Bsz, H, nc * L, -1)[:, :, :n].to(v.dtype)


def window_hyp_attn_dense(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, c: torch.Tensor, scale: torch.Tensor, window: int = 64
) -> torch.Tensor:
    """Oracle with an N x N score and the Mobius-addition distance. Same shapes as the reference."""
    Bsz, H, n, D = q.shape
    dt, ch, sh, qb, kb, vf = _prep(q, k, v, c, scale)
    d = pn.dist(qb.unsqueeze(3), kb.unsqueeze(2), ch.unsqueeze(-1)).squeeze(-1)  # (B, H, N, N)
    t = torch.arange(n, device=q.device)
    valid = (t.view(1, n) <= t.view(n, 1)) & (t.view(1, n) > t.view(n, 1) - window)
    score = (-sh * d).masked_fill(~valid, float("-inf"))
    return (torch.softmax(score, dim=-1) @ vf).to(v.dtype)
