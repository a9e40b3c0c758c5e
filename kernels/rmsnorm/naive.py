"""RMSNorm over the last dim, pure PyTorch (the reference the Triton kernel is tested against).

    y = x * rsqrt(mean(x^2, -1) + eps) * weight

Computed in float32 (float64 when x or weight is float64), returned in x's dtype. This is bit-for-bit
what `torch.nn.RMSNorm` returns on CPU, also for bf16/fp16 x with a float32 weight (the amp case, where
PyTorch takes this same decomposed path).
"""

from __future__ import annotations

import torch


def default_eps(x: torch.Tensor) -> float:
    """eps that `torch.nn.RMSNorm(eps=None)` uses for x: the epsilon of its compute dtype.

    That is float32's epsilon for bf16/fp16/fp32 x (not `finfo(x.dtype).eps`, which the PyTorch docs
    state but ATen does not do), float64's for float64 x.
    """
    return torch.finfo(torch.float64 if x.dtype == torch.float64 else torch.float32).eps


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x: (..., D) any float dtype; weight: (D,) any float dtype -> (..., D) in x's dtype."""
    acc = torch.float64 if torch.float64 in (x.dtype, weight.dtype) else torch.float32
    xf = x.to(acc)
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * rstd * weight.to(acc)).to(x.dtype)
