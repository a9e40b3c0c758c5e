"""Poincare-ball toolkit: exp0, log0, mobius_add, dist0, dist (vectors on the last dim).

c: positive tensor broadcastable against x with a last dim of 1 (scalar, (H, 1, 1), (..., 1)).
"""

from __future__ import annotations

import torch

from kernels.backend import use_triton
from kernels.poincare import naive
from kernels.poincare.naive import BALL_EPS

__all__ = ["exp0", "log0", "mobius_add", "dist0", "dist"]


def _triton_ok(*xs: torch.Tensor) -> bool:
    return use_triton(xs[0]) and all(x.dtype != torch.float64 for x in xs)


def exp0(v: torch.Tensor, c) -> torch.Tensor:
    """exp map at 0. v: (..., D) -> (..., D)."""
    if _triton_ok(v):
        from kernels.poincare.triton import exp0_triton

        return exp0_triton(v, c)
    return naive.exp0(v, c)


def log0(x: torch.Tensor, c, eps: float = BALL_EPS) -> torch.Tensor:
    """log map at 0, |x| clamped to (1 - eps)/sqrt(c). x: (..., D) -> (..., D)."""
    if _triton_ok(x):
        from kernels.poincare.triton import log0_triton

        return log0_triton(x, c, eps=eps)
    return naive.log0(x, c, eps=eps)


def mobius_add(x: torch.Tensor, y: torch.Tensor, c) -> torch.Tensor:
    """x (+) y. x, y: (..., D) -> (..., D)."""
    if _triton_ok(x, y):
        from kernels.poincare.triton import mobius_add_triton

        return mobius_add_triton(x, y, c)
    return naive.mobius_add(x, y, c)


def dist0(x: torch.Tensor, c, eps: float = BALL_EPS) -> torch.Tensor:
    """d_c(0, x). x: (..., D) -> (..., 1). Elementwise after one norm: left to PyTorch."""
    return naive.dist0(x, c, eps=eps)


def dist(x: torch.Tensor, y: torch.Tensor, c, eps: float = BALL_EPS) -> torch.Tensor:
    """d_c(x, y) = dist0((-x) (+) y). x, y: (..., D) -> (..., 1)."""
    return dist0(mobius_add(-x, y, c), c, eps=eps)
