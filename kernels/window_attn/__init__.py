"""Causal sliding-window attention scored by negative Poincare distance of exp0-mapped q, k."""

from __future__ import annotations

import torch

from kernels.backend import use_triton_attention
from kernels.window_attn.naive import pair_dist, window_hyp_attn_dense, window_hyp_attn_ref

__all__ = ["window_hyp_attn", "window_hyp_attn_ref", "window_hyp_attn_dense", "pair_dist"]


def window_hyp_attn(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, c: torch.Tensor, scale: torch.Tensor, window: int = 64
) -> torch.Tensor:
    """q, k, v: (B, H, N, D) tangent vectors; c, scale: (H,) > 0 -> o: (B, H, N, D) in v's dtype.

    score(t, s) = -scale_h * d_c(exp0(q_t), exp0(k_s)) for s in (t - window, t]; softmax over s.
    float64, or a head dim above kernels.backend.ATTENTION_MAX_HEAD_DIM, takes the reference.
    """
    if use_triton_attention(q, v) and torch.float64 not in (q.dtype, k.dtype, v.dtype):
        from kernels.window_attn.triton import window_hyp_attn_triton

        return window_hyp_attn_triton(q, k, v, c, scale, window=window)
    return window_hyp_attn_ref(q, k, v, c, scale, window=window)
