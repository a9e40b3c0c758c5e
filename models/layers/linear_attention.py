"""Hyperbolic linear attention (docs/models.md, phase8): queries and keys are points on a Poincare ball,
ELU+1 linear attention over them.

Geometries (`geometry`):

- `ball` (phase8, phase8-seed): each head's query and key are mapped onto the ball, q_h <- exp0_{c/Dh}(q_h), i.e.
  sqrt(Dh) exp0_c(q_h / sqrt(Dh)): the ball's radius is sqrt(Dh / c), measured in the head's RMS units,
  so sqrt(c) |q_h| / sqrt(Dh) is independent of the width and the curvature acts at every d_model. A
  query or key saturates smoothly towards the boundary (tanh), differently per token and per head; c
  changes the outputs and receives a gradient from the first step. Values stay Euclidean.
- `euclidean` (phase8 `lin_attn_geometry: euclidean`, the ablation): the same branch with no map and
  no curvature parameter: ELU+1 linear attention on the projections.

The layer this replaces clipped the input's tangent norm to artanh(0.999)/sqrt(c) (the closed form of an
exp0/log0 round trip). At c = 0.01 that radius is 38.0 while a normalised token has norm sqrt(d), so
below d ~1,444 the clip never fired: the layer was Euclidean and its curvature got an all-zero gradient.

`mode="exact"` (phase8 `lin_attn_mode`) replaces the linear attention by causal softmax attention on the
negative Poincare distance, `softmax_s(-softplus(beta_h) d_c(exp0 q_t, exp0 k_s))` over all s <= t,
O(N^2), for comparison only; `mode="auto"` picks exact while the curvature exceeds `auto_threshold`
(upstream's idea) and linear otherwise. Those two modes add the per-head `beta`; the exact form maps q
and k itself, so `ball` adds no second map there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kernels.poincare import exp0

from .attention import heads
from .gates import channel_scale

GEOMETRIES = ("ball", "euclidean")


def ball_point(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x: (..., D), c > 0 -> sqrt(D) exp0_c(x / sqrt(D)) = exp0_{c/D}(x): (..., D), |out| < sqrt(D / c)."""
    return exp0(x, c / x.shape[-1])


def linear_attn_bidirectional(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6):
    """Non-causal ELU+1 linear attention. q, k: (B, H, N, Dk), v: (B, H, N, Dv) -> (B, H, N, Dv).

    The key-value state and the normaliser are means over N, not sums: their ratio is the same, and
    the normaliser stays O(Dk) instead of O(N * Dk), which overflowed fp16 (65504) at N = 512, Dk = 128.
    """
    n = k.shape[-2]
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    kv = (fk / n).transpose(-1, -2) @ v  # (B, H, Dk, Dv)
    norm = fq @ fk.mean(dim=-2, keepdim=True).transpose(-1, -2)  # (B, H, N, 1)
    return (fq @ kv) / (norm + eps)


class HyperbolicLinearAttention(nn.Module):
    """x: (B, N, d) -> (B, N, d); O(N) time and memory. `value_gate` (B, N, C), C dividing d, scales the
    values per channel (`models.layers.gates.channel_scale`)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        causal: bool,
        bias: bool = True,
        c_init: float = 1.0,
        mode: str = "linear",
        auto_threshold: float = 1.0,
        c_bounds: tuple[float, float] | None = None,
        geometry: str = "ball",
    ):
        super().__init__()
        if mode not in ("linear", "exact", "auto"):
            raise ValueError(f"mode: {mode!r} is not one of linear, exact, auto")
        if mode != "linear" and not causal:
            raise ValueError("mode exact/auto is causal only")
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry: {geometry!r} is not one of {', '.join(GEOMETRIES)}")
        if geometry == "euclidean" and mode != "linear":
            raise ValueError("geometry euclidean has no curvature: mode must be linear")
        self.n_heads, self.causal = n_heads, causal
        self.mode, self.auto_threshold, self.geometry = mode, auto_threshold, geometry
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        # c_bounds given: c = softplus(raw) clamped to the bounds (docs/models.md); else the seed's raw clamp
        self.c_bounds = c_bounds
        raw = float(c_init) if c_bounds is None else float(c_init) + math.log(-math.expm1(-float(c_init)))
        self.curvature = nn.Parameter(torch.tensor(raw)) if geometry != "euclidean" else None
        # softplus(0.5413) = 1: the distance scale of the exact mode
        self.beta = nn.Parameter(torch.full((n_heads,), 0.5413)) if mode != "linear" else None

    def c(self) -> torch.Tensor:
        raw = self.curvature if self.curvature.dtype == torch.float64 else self.curvature.float()
        if self.c_bounds is not None:
            return F.softplus(raw).clamp(*self.c_bounds)
        return raw.clamp_min(1e-4)

    def forward(self, x: torch.Tensor, value_gate: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = heads(self.in_proj(x), self.n_heads)  # (B, H, N, Dh) each
        exact = self.use_exact()
        if self.geometry == "ball" and not exact:
            c = self.c()
            q, k = ball_point(q, c), ball_point(k, c)  # (B, H, N, Dh), on the ball
        if value_gate is not None:  # keep the projection's dtype: an fp32 gate must not turn the kernel fp32
            v = channel_scale(value_gate, v.transpose(1, 2)).to(v.dtype).transpose(1, 2)
        if exact:
            from kernels.window_attn import window_hyp_attn

            ch = self.c().expand(self.n_heads)  # (H,)
            beta = self.beta if self.beta.dtype == torch.float64 else self.beta.float()
            o = window_hyp_attn(q, k, v, ch, F.softplus(beta), window=max(1, n))  # (B, H, N, Dh)
        elif self.causal:
            from kernels.linear_attn import causal_linear_attn

            o = causal_linear_attn(q, k, v)  # (B, H, N, Dh)
        else:
            o = linear_attn_bidirectional(q, k, v)
        return self.out_proj(o.transpose(1, 2).reshape(b, n, d))

    def use_exact(self) -> bool:
        if self.mode == "auto":
            return float(self.c().detach()) > self.auto_threshold
        return self.mode == "exact"


def tangent_linear_attention_params(
    d_model: int, bias: bool = True, n_heads: int = 0, mode: str = "linear", geometry: str = "ball"
) -> int:
    curvature = 0 if geometry == "euclidean" else 1  # the ball's learned curvature
    return 4 * d_model * d_model + (4 * d_model if bias else 0) + curvature + (n_heads if mode != "linear" else 0)


#: chunk length of kernels.linear_attn.causal_linear_attn (the CPU reference and the Triton kernel's BT)
LINEAR_ATTN_CHUNK = 64


def tangent_linear_attention_forward_flops(
    d_model: int, head_dim: int, seq_len: int, causal: bool, chunk: int = LINEAR_ATTN_CHUNK
) -> float:
    """Forward FLOPs per token of one layer's linear attention (all heads), matrix products only.

    - bidirectional: state phi(K)^T V (2 d Dh), readout phi(q) S (2 d Dh), normaliser phi(q) . mean phi(k)
      (2 d): 4 d Dh + 2 d.
    - causal, chunked (what both kernels run, chunks of L = min(chunk, N) tokens, N padded to a multiple
      of L): intra-chunk scores phi(Q) phi(K)^T (2 L d) and their product with V (2 L d), the masked half of
      the L x L products included (both kernels compute it); readout of the earlier chunks' state
      phi(q) S (2 d Dh) and the state update phi(K)^T V (2 d Dh): 4 d (L + Dh) per padded token.

    Not counted (elementwise, ~10 d): ELU+1 features, the ball map of q and k, the normaliser sums
    and the division.
    """
    if not causal:
        return 4.0 * d_model * head_dim + 2.0 * d_model
    n = max(1, int(seq_len))
    length = min(chunk, n)
    padded = -(-n // length) * length
    return padded / n * 4.0 * d_model * (length + head_dim)


def linear_attention_forward_flops(config, seq_len: int, matmul_only: bool = False) -> float:
    """Mixer FLOPs per token over all layers (phase8-seed): :func:`tangent_linear_attention_forward_flops`
    per layer (matrix products only, so `matmul_only` changes nothing)."""
    return config.n_layers * tangent_linear_attention_forward_flops(
        config.d_model, config.head_dim, seq_len, config.causal
    )
