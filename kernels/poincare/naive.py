"""Poincare-ball maps (curvature c > 0, radius 1/sqrt(c)), pure PyTorch.

Vectors live on the last dim. c is a positive tensor (or float) broadcastable against x with a last
dim of 1: a scalar, per-head (H, 1, 1), per-row (..., 1). Half/bfloat16 inputs are computed in
float32 and returned in their own dtype.

    exp0(v)   = tanh(sqrt(c)|v|) v / (sqrt(c)|v|)
    log0(x)   = artanh(sqrt(c)|x|) x / (sqrt(c)|x|),  sqrt(c)|x| clamped to 1 - eps
    x (+) y   = ((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y) / (1 + 2c<x,y> + c^2|x|^2|y|^2)
    dist0(x)  = (2/sqrt c) artanh(sqrt(c)|x|)
    dist(x,y) = (2/sqrt c) artanh(sqrt(c)|(-x) (+) y|)

Norms use sqrt(max(|v|^2, MIN_NORM^2)), so at v = 0 the maps are the identity-limit with a finite
gradient (tanh(u)/u -> 1, artanh(u)/u -> 1) and no NaN.
"""

from __future__ import annotations

import torch

MIN_NORM = 1e-15
BALL_EPS = 1e-5  # sqrt(c)|x| <= 1 - BALL_EPS
DEN_MIN = 1e-15  # Mobius-addition denominator floor


def compute_dtype(*xs: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def as_curvature(c, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if not torch.is_tensor(c):
        c = torch.tensor(float(c), device=like.device)
    return c.to(device=like.device, dtype=dtype)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(-1, keepdim=True).clamp_min(MIN_NORM * MIN_NORM).sqrt()


def exp0(v: torch.Tensor, c) -> torch.Tensor:
    """Exponential map at the origin. v: (..., D) -> (..., D)."""
    dt = compute_dtype(v)
    vf = v.to(dt)
    sc = as_curvature(c, v, dt).sqrt()
    u = sc * _norm(vf)
    return (torch.tanh(u) / u * vf).to(v.dtype)


def log0(x: torch.Tensor, c, eps: float = BALL_EPS) -> torch.Tensor:
    """Logarithmic map at the origin; |x| clamped to (1 - eps)/sqrt(c). x: (..., D) -> (..., D)."""
    dt = compute_dtype(x)
    xf = x.to(dt)
    sc = as_curvature(c, x, dt).sqrt()
    u = sc * _norm(xf)
    uc = u.clamp_max(1.0 - eps)
    return (torch.atanh(uc) / u * xf).to(x.dtype)


def mobius_add(x: torch.Tensor, y: torch.Tensor, c) -> torch.Tensor:
    """Mobius addition x (+) y. x, y: (..., D) (broadcastable) -> (..., D)."""
    dt = compute_dtype(x, y)
    xf, yf = x.to(dt), y.to(dt)
    cc = as_curvature(c, x, dt)
    xy = (xf * yf).sum(-1, keepdim=True)
    x2 = (xf * xf).sum(-1, keepdim=True)
    y2 = (yf * yf).sum(-1, keepdim=True)
    num = (1 + 2 * cc * xy + cc * y2) * xf + (1 - cc * x2) * yf
    den = (1 + 2 * cc * xy + cc * cc * x2 * y2).clamp_min(DEN_MIN)
    return (num / den).to(torch.promote_types(x.dtype, y.dtype))


def dist0(x: torch.Tensor, c, eps: float = BALL_EPS) -> torch.Tensor:
    """Distance to the origin. x: (..., D) -> (..., 1)."""
    dt = compute_dtype(x)
    xf = x.to(dt)
    sc = as_curvature(c, x, dt).sqrt()
    u = (sc * _norm(xf)).clamp_max(1.0 - eps)
    return (2.0 / sc * torch.atanh(u)).to(x.dtype)


def dist(x: torch.Tensor, y: torch.Tensor, c, eps: float = BALL_EPS) -> torch.Tensor:
    """Geodesic distance d_c(x, y). x, y: (..., D) (broadcastable) -> (..., 1)."""
    return dist0(mobius_add(-x, y, c), c, eps=eps)
