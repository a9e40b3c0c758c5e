"""Learned curvature of a Poincare ball: `c = softplus(raw)` clamped to [c_min, c_max] (docs/models.md)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def upcast(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16/float32 -> float32; float64 stays float64 (the precision of the math)."""
    return t if t.dtype == torch.float64 else t.float()


def inverse_softplus(y: float) -> float:
    """x with softplus(x) = y (y > 0)."""
    return y + math.log(-math.expm1(-y))


class Curvature(nn.Module):
    """`shape` learned curvatures; forward() -> float32 tensor of that shape in [c_min, c_max]."""

    def __init__(self, shape: tuple[int, ...], init: float, c_min: float, c_max: float):
        super().__init__()
        self.c_min, self.c_max = c_min, c_max
        self.raw = nn.Parameter(torch.full(shape, inverse_softplus(init)))

    def forward(self) -> torch.Tensor:
        return F.softplus(upcast(self.raw)).clamp(self.c_min, self.c_max)
