"""BK-Core: the diagonal of the Green's function of a learned tridiagonal Hamiltonian (docs/models.md).

`bk_core(v, h0, beta, z_re, z_im, causal=True) -> (g_re, g_im)`: v (B, N, C) real potentials; h0, beta,
z_re, z_im (C,) real (z_im > 0); outputs (B, N, C) float32 (float64 for float64 v; bf16/fp16 v upcast to
float32). Triton on CUDA (or under TRITON_INTERPRET with the `triton` backend) for float32 work, the
parallel PyTorch scan otherwise. `bk_core_sequential` is the complex128 reference.
"""

from __future__ import annotations

import torch

from kernels.backend import use_triton
from kernels.bk_core.naive import bk_core_dense, bk_core_sequential
from kernels.bk_core.parallel import bk_core_parallel

__all__ = ["bk_core", "bk_core_sequential", "bk_core_parallel", "bk_core_dense"]


def bk_core(v, h0, beta, z_re, z_im, causal: bool = True):
    """v (B, N, C); h0, beta, z_re, z_im (C,) -> (g_re, g_im), each (B, N, C)."""
    dtype = torch.float64 if v.dtype == torch.float64 else torch.float32
    v = v.to(dtype)
    h0, beta, z_re, z_im = (p.to(dtype) for p in (h0, beta, z_re, z_im))
    if dtype == torch.float32 and use_triton(v):
        from kernels.bk_core.triton import bk_core_triton

        return bk_core_triton(v, h0, beta, z_re, z_im, causal=causal)
    return bk_core_parallel(v, h0, beta, z_re, z_im, causal=causal)
