"""Hyperbolic selective SSM (phase8 `hyp_ssm`, docs/models.md).

The recurrence runs in the tangent space at the origin, so it is a diagonal linear scan (exact and
parallel, kernels.scan.diag_scan):

    Delta_t = softplus(W_dt x_t + dt0),  a_t = exp(-Delta_t * softplus(A)),  h_t = a_t (.) h_{t-1} + Delta_t (.) B x_t

and the readout goes through the ball with a learned point p (a Mobius translation, an isometry of the
ball, so the exp0/log0 round trip does not cancel):

    y_t = W_out( sigma(C x_t) (.) log0( exp0(h_t) (+) p ) )

`mode="mobius"` is upstream's recurrence inside the ball, h_t = (a_t (x) h_{t-1}) (+) exp0(Delta_t B x_t)
with the Mobius scalar product a (x) h = exp0(a log0(h)); Mobius addition is not associative, so this is
a sequential loop, kept as a reference only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kernels.poincare import exp0, log0, mobius_add
from kernels.scan import diag_scan

from .ffn import linear_params
from .poincare_layers import Curvature, inverse_softplus, upcast


class HyperbolicSSM(nn.Module):
    """x: (B, N, d) -> (B, N, d)."""

    def __init__(self, d_model: int, d_state: int, mode: str, c_init: float, c_min: float, c_max: float):
        super().__init__()
        self.d_state, self.mode = d_state, mode
        self.in_proj = nn.Linear(d_model, 3 * d_state, bias=True)  # [dt | B | C]; the dt bias is dt0
        self.a_raw = nn.Parameter(torch.tensor([inverse_softplus(float(i)) for i in range(1, d_state + 1)]))
        self.point = nn.Parameter(torch.randn(d_state) * 0.1)  # tangent vector of p: p = exp0(point)
        self.curvature = Curvature((), c_init, c_min, c_max)
        self.out = nn.Linear(d_state, d_model, bias=False)
        with torch.no_grad():  # Delta in [1e-3, 1e-1] at init (log-spaced), as in selective SSMs
            dt = torch.exp(torch.linspace(math.log(1e-3), math.log(1e-1), d_state))
            self.in_proj.bias[:d_state].copy_(dt + torch.log(-torch.expm1(-dt)))

    def coefficients(self, x: torch.Tensor):
        """x (B, N, d) -> a, b (B, N, S) float32 and the readout gate sigma(C x) (B, N, S)."""
        dt_raw, bx, cx = upcast(self.in_proj(x)).split(self.d_state, dim=-1)  # (B, N, S) each
        delta = F.softplus(dt_raw)
        a = torch.exp(-delta * F.softplus(upcast(self.a_raw)))
        return a, delta * bx, torch.sigmoid(cx)

    def readout(self, h_ball: torch.Tensor, gate: torch.Tensor, c: torch.Tensor, dtype) -> torch.Tensor:
        p = exp0(upcast(self.point), c)  # (S,)
        y = log0(mobius_add(h_ball, p, c), c)  # (B, N, S)
        return self.out((gate * y).to(dtype))  # (B, N, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, gate = self.coefficients(x)  # (B, N, S)
        c = self.curvature()
        if self.mode == "mobius":
            return self.readout(self.mobius_states(a, b, c), gate, c, x.dtype)
        h = diag_scan(a.transpose(1, 2), b.transpose(1, 2)).transpose(1, 2)  # (B, N, S) tangent states
        return self.readout(exp0(h, c), gate, c, x.dtype)

    @staticmethod
    def mobius_states(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Sequential ball recurrence h_t = exp0(a_t log0 h_{t-1}) (+) exp0(b_t). a, b (B, N, S) -> (B, N, S)."""
        h = torch.zeros_like(b[:, 0])
        out = []
        for t in range(b.shape[1]):
            h = mobius_add(exp0(a[:, t] * log0(h, c), c), exp0(b[:, t], c), c)
            out.append(h)
        return torch.stack(out, dim=1)


def hyperbolic_ssm_params(d_model: int, d_state: int) -> int:
    return linear_params(d_model, 3 * d_state) + 2 * d_state + 1 + d_state * d_model


def hyperbolic_ssm_forward_flops(d_state: int, matmul_only: bool = False) -> float:
    """Forward FLOPs per token beyond its weights: elementwise only (0 with `matmul_only`); discretisation,
    scan, exp0 / Mobius / log0 readout, ~40 per state."""
    return 0.0 if matmul_only else 40.0 * d_state
