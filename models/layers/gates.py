"""Gates driven by the BK-Core and by hyperbolic distance (docs/models.md, phase7 and phase8).

- BKGate (phase7): per channel j, `sigma(s_j |Im g_t| + b_j)` from the BK-Core on norm(x); each channel
  covers d/C consecutive model dims (one head's dims when C = H).
- BKHyperbolicGate (phase8, `bk_hyperbolic`): per channel `sigma(w_j . [Re g, Im g] + b_j)`, reusing
  the block's g_t; it multiplies the linear-attention values.
- HyperbolicFusion (phase8, `ar_fusion`): per token `sigma(MLP(d_c(0, exp0(u_t)) / tau))`, MLP 1 -> 32 -> 1,
  with u_t the AR-SSM's rank-R code `U x_t / sqrt(R)`. d_c(0, exp0(u)) = 2|u| for every curvature (exp0
  rescales u along itself, d_c(0, .) undoes it), so it is computed as 2|u|: no exp0, no artanh and no
  curvature parameter, which could only act through the numerical clamp at the ball's boundary.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .bk_core import BKCore, bk_core_params
from .poincare_layers import upcast


def channel_scale(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """g: (B, N, C), x: (B, N, d) -> x * g (B, N, d), channel j scaling dims [j d/C, (j + 1) d/C).

    g is broadcast over its d/C dims, never expanded to (B, N, d): on the GPU each expanded copy (and its
    cast) was a full activation-sized write per gate per layer.
    """
    b, n, c = g.shape
    return (x.reshape(b, n, c, -1) * g.unsqueeze(-1)).reshape(x.shape)


class BKGate(nn.Module):
    """h: (B, N, d) -> (gate (B, N, C) in (0, 1), g_re (B, N, C), g_im (B, N, C))."""

    def __init__(self, d_model: int, channels: int, causal: bool, v_max: float, s_init: float, b_init: float):
        super().__init__()
        self.core = BKCore(d_model, channels, causal=causal, v_max=v_max)
        self.scale = nn.Parameter(torch.full((channels,), float(s_init)))
        self.bias = nn.Parameter(torch.full((channels,), float(b_init)))

    def forward(self, h: torch.Tensor):
        g_re, g_im = self.core(h)  # (B, N, C) each, float32
        gate = torch.sigmoid(self.scale * g_im.abs() + self.bias)  # (B, N, C)
        return gate, g_re, g_im


def bk_gate_params(d_model: int, channels: int) -> int:
    return bk_core_params(d_model, channels) + 2 * channels


class BKHyperbolicGate(nn.Module):
    """(g_re, g_im) (B, N, C) -> value gate (B, N, C) in (0, 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels, 2).normal_(0.0, 0.5))
        self.bias = nn.Parameter(torch.full((channels,), 2.0))  # starts mostly open

    def forward(self, g_re: torch.Tensor, g_im: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(g_re * self.weight[:, 0] + g_im * self.weight[:, 1] + self.bias)


def bk_hyperbolic_gate_params(channels: int) -> int:
    return 3 * channels


class HyperbolicFusion(nn.Module):
    """u: (B, N, R) tangent code -> per-token scale (B, N, 1) in (0, 1)."""

    def __init__(self, hidden: int, tau: float):
        super().__init__()
        self.tau = tau
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        dist = 2.0 * upcast(u).norm(dim=-1, keepdim=True) / math.sqrt(u.shape[-1])  # (B, N, 1) = d_c(0, exp0(u))
        return torch.sigmoid(self.mlp((dist / self.tau).to(u.dtype)))  # (B, N, 1)


def hyperbolic_fusion_params(hidden: int) -> int:
    return 2 * hidden + hidden + 1
