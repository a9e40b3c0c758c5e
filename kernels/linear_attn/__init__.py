"""Causal normalised linear attention (ELU+1 features), chunked."""

from __future__ import annotations

import torch

from kernels.backend import use_triton_attention
from kernels.linear_attn.naive import (
    causal_linear_attn_chunked,
    causal_linear_attn_quadratic,
    elu_feature,
)

__all__ = [
    "causal_linear_attn",
    "causal_linear_attn_chunked",
    "causal_linear_attn_quadratic",
    "elu_feature",
]


def causal_linear_attn(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6, chunk_size: int = 64
) -> torch.Tensor:
    """o_t = phi(q_t) S_t / (phi(q_t) . z_t + eps), phi = ELU+1 applied here.

    q, k: (B, H, N, Dk), v: (B, H, N, Dv) -> o: (B, H, N, Dv) in v's dtype. float64, or a head dim
    above kernels.backend.ATTENTION_MAX_HEAD_DIM, takes the reference.
    """
    if use_triton_attention(q, v) and torch.float64 not in (q.dtype, k.dtype, v.dtype):
        from kernels.linear_attn.triton import causal_linear_attn_triton

        return causal_linear_attn_triton(q, k, v, eps=eps, chunk_size=chunk_size)
    return causal_linear_attn_chunked(q, k, v, eps=eps, chunk_size=chunk_size)
