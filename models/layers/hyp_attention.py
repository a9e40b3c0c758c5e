"""Causal windowed hyperbolic attention, the local path of the Phase 7 block (docs/models.md).

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

from .attention import heads
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
        q, k, v = heads(self.qkv(x), self.n_heads)  # (B, H, N, Dh) each
        o = window_hyp_attn(q, k, v, self.curvature(), F.softplus(upcast(self.beta)), self.window)  # (B, H, N, Dh)
        return o.transpose(1, 2).reshape(b, n, d)


def window_hyp_attention_params(d_model: int, n_heads: int) -> int:
    return 3 * d_model * d_model + 2 * n_heads


def window_block(head_dim: int) -> int:
    """Query block BM = key tile BN of the Triton kernels (kernels/window_attn/triton.py `_cfg`)."""
    return 64 if head_dim <= 64 else 32


def window_key_span(window: int, seq_len: int, head_dim: int) -> float:
    """Keys scored per query (mean over the N queries) by the blocked Triton forward: each block of BM
    queries scores the BN-wide key tiles from the one holding its first query's window start up to its
    own end, masked entries included: about window + BM, at most the causal prefix (~N/2 + BM/2 when
    the window covers the sequence)."""
    n = max(1, int(seq_len))
    block = window_block(head_dim)
    tiles = 0
    for i in range(-(-n // block)):
        lo = max(i * block - window + 1, 0) // block * block
        hi = min((i + 1) * block, n)
        tiles += -(-(hi - lo) // block)
    return tiles * block * block / n


def window_attention_forward_flops(
    d_model: int, n_heads: int, window: int, seq_len: int, matmul_only: bool = False
) -> float:
    """Forward FLOPs per token of one layer's windowed hyperbolic attention (all heads), with
    S = :func:`window_key_span` keys per query:

    - Gram entries <q, k> (2 S d) and the weighted values p . v (2 S d): 4 S d;
    - elementwise, ~10 per score and head (distance from the Gram entries, artanh, scale, softmax): 10 S H,
      left out with `matmul_only`.
    """
    span = window_key_span(window, seq_len, d_model // n_heads)
    return 4.0 * span * d_model + (0.0 if matmul_only else 10.0 * span * n_heads)
