"""Diagonal linear recurrence h_t = a_t * h_{t-1} + b_t over the last dim of (B, C, N) tensors."""

from __future__ import annotations

import torch

from kernels.backend import use_triton
from kernels.scan.naive import diag_scan_ref, diag_scan_sequential

__all__ = ["diag_scan", "diag_scan_ref", "diag_scan_sequential"]


def diag_scan(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t (reverse: h_t = a_t * h_{t+1} + b_t). a, b: (B, C, N) -> h: (B, C, N).

    fp32 accumulation, output dtype of b. float64 inputs always take the reference.
    """
    if use_triton(b) and b.dtype != torch.float64 and a.dtype != torch.float64:
        from kernels.scan.triton import diag_scan_triton

        return diag_scan_triton(a, b, reverse=reverse)
    return diag_scan_ref(a, b, reverse=reverse)
