"""RMSNorm layer on the fused kernel (kernels.rmsnorm): one launch forward, one backward under amp.

`torch.nn.RMSNorm` given bf16/fp16 activations and a float32 weight cannot use its fused path and runs
~8 kernels forward; this module computes the same values through `kernels.rmsnorm.rms_norm` (Triton on
CUDA, the reference elsewhere).
"""

from __future__ import annotations

import torch
from torch import nn

from kernels.rmsnorm import default_eps, rms_norm


class RMSNorm(nn.Module):
    """Drop-in for `torch.nn.RMSNorm(normalized_shape: int, eps)`: same `weight` parameter (ones), same
    state_dict, same values. eps=None uses the epsilon `nn.RMSNorm` uses (float32's for bf16/fp16/fp32 x,
    float64's for float64 x). x: (..., D) -> (..., D) in x's dtype."""

    def __init__(
        self, normalized_shape: int | tuple[int] | list[int], eps: float | None = None, device=None, dtype=None
    ) -> None:
        super().__init__()
        if not isinstance(normalized_shape, int):
            shape = tuple(normalized_shape)
            if len(shape) != 1:
                raise ValueError(f"RMSNorm normalizes the last dim only, got normalized_shape={shape}")
            normalized_shape = shape[0]
        self.normalized_shape = (int(normalized_shape),)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, default_eps(x) if self.eps is None else self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"
