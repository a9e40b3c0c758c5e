"""Causal windowed hyperbolic attention, the local path of the Phase 7 block (models.md).

q, k, v = projections of the normalised input, per head; q and k enter the Poincare ball with exp0
(per-head learned curvature c_h), the score of key s for query t is `-softplus(beta_h) d_c(q_t, k_s)`
for s in (t - window, t], softmax over s; values stay in the tangent space. The op is
kernels.window_attn.window_hyp_attn (O(N * window) time and memory).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kernels.window_attn import window_hyp_attn

from .poincare_layers import Curvature, inverse_softplus, upcast


class WindowHypAttention(nn.Module):
    """x: (B, N, d) -> (B, N, d) (heads concatenated, no output projection: the block has W_o)."""

    def __init__(self, d_model: int, n_heads: int, window: int, c_init: float, c_min: float, c_max: float):
        super().__init__()
        self.n_heads, self.window = n_heads, window
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.curvature = Curvature((n_heads,), c_init, c_min, c_max)
        self.beta = nn.Parameter(torch.full((n_heads,), inverse_softplus(1.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, H, N, Dh)
        o = window_hyp_attn(q, k, v, self.curvature(), F.softplus(upcast(self.beta)), self.window)  # (B, H, N, Dh)
        return o.transpose(1, 2).reshape(b, n, d)


def window_hyp_attention_params(d_model: int, n_heads: int) -> int:
    return 3 * d_model * d_model + 2 * n_heads


def window_attention_forward_flops(d_model: int, n_heads: int, window: int, seq_len: int) -> float:
    """Per token: Gram entries q.k and p.v over the window (2 * 2 * w * d) plus ~10 per score."""
    w = min(window, seq_len)
    return 4.0 * w * d_model + 10.0 * w * n_heads
