"""Feed-forward blocks: dense `d -> m -> d` or low-rank `d -> k -> m -> act -> k -> d` (docs/models.md)."""

from __future__ import annotations

import torch
from torch import nn


class FFN(nn.Module):
    """x: (B, N, d) -> (B, N, d). rank == d: dense two-layer MLP; rank < d: the low-rank form."""

    def __init__(self, d_model: int, hidden: int, rank: int, bias: bool = True):
        super().__init__()
        if rank >= d_model:
            layers = [nn.Linear(d_model, hidden, bias=bias), nn.GELU(), nn.Linear(hidden, d_model, bias=bias)]
        else:
            layers = [
                nn.Linear(d_model, rank, bias=bias),
                nn.Linear(rank, hidden, bias=bias),
                nn.GELU(),
                nn.Linear(hidden, rank, bias=bias),
                nn.Linear(rank, d_model, bias=bias),
            ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def ffn_params(d_model: int, hidden: int, rank: int, bias: bool = True) -> int:
    if rank >= d_model:
        return linear_params(d_model, hidden, bias) + linear_params(hidden, d_model, bias)
    return (
        linear_params(d_model, rank, bias)
        + linear_params(rank, hidden, bias)
        + linear_params(hidden, rank, bias)
        + linear_params(rank, d_model, bias)
    )


def make_ffn(config) -> FFN | None:
    """The FFN a config asks for (None when ffn_rank_ratio == 0)."""
    if config.ffn_rank_ratio == 0:
        return None
    return FFN(config.d_model, config.ffn_mult * config.d_model, max(config.ffn_rank, 1))


def config_ffn_params(config) -> int:
    if config.ffn_rank_ratio == 0:
        return 0
    return ffn_params(config.d_model, config.ffn_mult * config.d_model, max(config.ffn_rank, 1))
