"""AR-SSM, the global path of the Phase 7 block (docs/models.md, "phase7").

    y_t = conv(x)_t + W_o2[ S_t (.) (V x_t (.) gate2_t) ] * scale_t
    S_t = sum_{s<=t} a^(t-s) (1 - a) (U x_s (.) gate2_s)          (per rank channel, decay a in (0, 1))
    gate2_t = sigma(W2 relu(W1 x_t)),  hidden d/4

conv is depthwise with kernel `kernel` and left padding only (causal). The decayed sum is the
diagonal linear scan h_t = a h_{t-1} + b_t (kernels.scan.diag_scan). The factor (1 - a) makes S an
exponential moving average (bounded for any N); it is a fixed per-channel rescaling that U or W_o2
could absorb, so the function class is the one of docs/models.md. `decay=False` is upstream's plain
cumulative sum (a = 1, no factor). `scale_t` (B, N, 1) is the optional per-token factor of phase8's
hyperbolic fusion, `fusion(U x_t)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kernels.scan import diag_scan

from .autocast import autocast_inputs
from .ffn import linear_params
from .poincare_layers import upcast


def gate_hidden(d_model: int) -> int:
    return max(1, d_model // 4)


class ARSSM(nn.Module):
    """x: (B, N, d) -> (B, N, d)."""

    def __init__(self, d_model: int, rank: int, kernel: int = 3, decay: bool = True):
        super().__init__()
        self.rank, self.kernel = rank, kernel
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model, bias=True)
        self.proj_u = nn.Linear(d_model, rank, bias=False)
        self.proj_v = nn.Linear(d_model, rank, bias=False)
        self.out = nn.Linear(rank, d_model, bias=False)
        hidden = gate_hidden(d_model)
        self.gate = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, rank))
        if decay:
            # time constants 1/(1 - a) log-spaced from 2 to 1024 tokens
            tau = torch.logspace(math.log10(2.0), math.log10(1024.0), rank)
            rate = -torch.log1p(-1.0 / tau)  # -log a
            self.decay_raw = nn.Parameter(rate + torch.log(-torch.expm1(-rate)))  # inverse softplus
        else:
            self.decay_raw = None

    def decay(self) -> torch.Tensor:
        """a: (R,) in (0, 1) (ones without decay)."""
        if self.decay_raw is None:
            return torch.ones(self.rank, device=self.out.weight.device)
        return torch.exp(-F.softplus(upcast(self.decay_raw)))

    def forward(self, x: torch.Tensor, fusion: nn.Module | None = None) -> torch.Tensor:
        b, n, d = x.shape
        x_conv, x_gate, x_u, x_v = autocast_inputs(x, 4)  # one autocast cast for the conv and the projections
        xc = F.pad(x_conv.transpose(1, 2), (self.kernel - 1, 0))  # (B, d, N + k - 1)
        local = self.conv(xc).transpose(1, 2)  # (B, N, d)
        g2 = torch.sigmoid(self.gate(x_gate))  # (B, N, R)
        a = self.decay()  # (R,)
        ux = self.proj_u(x_u)  # (B, N, R)
        inp = (ux * g2).transpose(1, 2)  # (B, R, N)
        if self.decay_raw is not None:
            inp = inp * (1.0 - a)[:, None].to(inp.dtype)
        s = diag_scan(a[None, :, None].expand(b, -1, n), inp)  # (B, R, N)
        low = self.out(s.transpose(1, 2) * (self.proj_v(x_v) * g2))  # (B, N, d)
        if fusion is not None:
            low = low * fusion(ux).to(low.dtype)  # (B, N, d) * (B, N, 1)
        return local + low


def ar_ssm_params(d_model: int, rank: int, kernel: int, decay: bool) -> int:
    hidden = gate_hidden(d_model)
    return (
        d_model * kernel
        + d_model
        + 3 * d_model * rank
        + linear_params(d_model, hidden)
        + linear_params(hidden, rank)
        + (rank if decay else 0)
    )


def ar_ssm_forward_flops(d_model: int, rank: int, kernel: int, matmul_only: bool = False) -> float:
    """Forward FLOPs per token beyond its weights (the conv taps and projections are weights, counted as
    2 x params): elementwise only, so 0 with `matmul_only`; else the decayed scan (2 R), the gate and value
    products (4 R) and the conv + low-rank sum and bias (2 d)."""
    return 0.0 if matmul_only else 2.0 * rank + 4.0 * rank + 2.0 * d_model
