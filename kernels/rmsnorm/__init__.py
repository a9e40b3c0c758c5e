"""RMSNorm over the last dim: y = x * rsqrt(mean(x^2, -1) + eps) * weight, in x's dtype."""

from __future__ import annotations

import torch

from kernels.backend import use_triton
from kernels.rmsnorm.naive import default_eps, rms_norm_ref

__all__ = ["rms_norm", "rms_norm_ref", "default_eps"]

#: widest row the Triton kernel takes (one row is one register tile); wider rows take the reference
RMS_NORM_MAX_D = 65536


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x: (..., D); weight: (D,) -> (..., D) in x's dtype. fp32 math; float64 inputs take the reference."""
    if use_triton(x) and torch.float64 not in (x.dtype, weight.dtype) and 0 < x.shape[-1] <= RMS_NORM_MAX_D:
        from kernels.rmsnorm.triton import rms_norm_triton

        return rms_norm_triton(x, weight, eps)
    return rms_norm_ref(x, weight, eps)
