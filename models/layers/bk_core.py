"""BK-Core layer: token potentials -> Green's-function diagonal (docs/models.md, "BK-Core")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kernels.bk_core import bk_core


class BKCore(nn.Module):
    """x (B, N, d_model) -> (g_re, g_im), each (B, N, channels).

    v_t = v_max tanh(w x_t / v_max); diagonal h0 + v_t, off-diagonal beta, energy e + i eta with
    eta = softplus(eta_raw) + 1e-3.
    """

    def __init__(self, d_model: int, channels: int, causal: bool = True, v_max: float = 5.0):
        super().__init__()
        self.channels = channels
        self.causal = causal
        self.v_max = v_max
        self.w = nn.Linear(d_model, channels, bias=False)
        self.h0 = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.ones(channels))
        self.e = nn.Parameter(torch.linspace(-1.0, 1.0, channels) if channels > 1 else torch.zeros(1))
        eta0 = torch.linspace(0.1, 0.5, channels) if channels > 1 else torch.full((1,), 0.3)
        self.eta_raw = nn.Parameter(torch.log(torch.expm1(eta0 - 1e-3)))  # softplus^-1

    def eta(self) -> torch.Tensor:
        return F.softplus(self.eta_raw) + 1e-3

    def potentials(self, x: torch.Tensor) -> torch.Tensor:
        return self.v_max * torch.tanh(self.w(x) / self.v_max)

    def forward(self, x: torch.Tensor):
        return bk_core(self.potentials(x), self.h0, self.beta, self.e, self.eta(), causal=self.causal)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, causal={self.causal}, v_max={self.v_max}"


def bk_core_params(d_model: int, channels: int) -> int:
    """Parameter count of BKCore: w (d_model x channels) + h0, beta, e, eta_raw."""
    return d_model * channels + 4 * channels


__all__ = ["BKCore", "bk_core_params"]
