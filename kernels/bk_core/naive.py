"""BK-Core references: the plain continued-fraction recurrence and the explicit matrix inverse.

Both compute in complex128 (inputs cast to float64) with ordinary autograd and return float64.
`v`: (B, N, C) potentials; `h0`, `beta`, `z_re`, `z_im`: (C,); diagonal `alpha_t = h0 + v_t`,
off-diagonal `beta`, energy `z = z_re + i z_im` (z_im > 0). Returns `(g_re, g_im)`, each (B, N, C).
"""

from __future__ import annotations

import torch

__all__ = ["bk_core_sequential", "bk_core_dense"]


def _shifted_diagonal(v, h0, z_re, z_im):
    """a_t = alpha_t - z as complex128, (B, N, C)."""
    v = v.to(torch.float64)
    re = v + (h0.to(torch.float64) - z_re.to(torch.float64))
    im = (-z_im.to(torch.float64)).expand_as(re)
    return torch.complex(re, im)


def _sweep(a: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """g_1 = 1/a_1, g_t = 1/(a_t - b2 g_{t-1}) along dim 1, one step at a time."""
    out = []
    g = None
    for t in range(a.shape[1]):
        den = a[:, t] if g is None else a[:, t] - b2 * g
        g = 1.0 / den
        out.append(g)
    return torch.stack(out, dim=1)


def bk_core_sequential(v, h0, beta, z_re, z_im, causal: bool = True):
    """Reference BK-Core by the sequential recurrence. v (B, N, C); rest (C,) -> (g_re, g_im) float64."""
    a = _shifted_diagonal(v, h0, z_re, z_im)
    b2 = beta.to(torch.float64) ** 2
    gl = _sweep(a, b2)
    if causal:
        g = gl
    else:
        gr = _sweep(a.flip(1), b2).flip(1)
        zero = torch.zeros_like(a[:, :1])
        gl_prev = torch.cat([zero, gl[:, :-1]], dim=1)  # gL_{t-1}, gL_0 = 0
        gr_next = torch.cat([gr[:, 1:], zero], dim=1)  # gR_{t+1}, gR_{N+1} = 0
        g = 1.0 / (a - b2 * gl_prev - b2 * gr_next)
    return g.real, g.imag


def bk_core_dense(v, h0, beta, z_re, z_im, causal: bool = True):
    """Reference BK-Core by inverting (T - z) explicitly (small N). Same signature as the sequential one.

    Causal: g_t = [(T_t - z)^-1]_tt with T_t the leading t x t block; bidirectional: diag((T - z)^-1).
    """
    a = _shifted_diagonal(v, h0, z_re, z_im).permute(0, 2, 1)  # (B, C, N)
    n = a.shape[-1]
    beta = beta.to(torch.float64).to(torch.complex128)
    off = torch.diag_embed(torch.ones(n - 1, dtype=torch.complex128, device=a.device), offset=1)
    off = off + off.transpose(0, 1)
    mat = torch.diag_embed(a) + beta[:, None, None] * off  # (B, C, N, N)
    if causal:
        cols = [torch.linalg.inv(mat[..., :t, :t])[..., t - 1, t - 1] for t in range(1, n + 1)]
        g = torch.stack(cols, dim=-1)
    else:
        g = torch.diagonal(torch.linalg.inv(mat), dim1=-2, dim2=-1)
    g = g.permute(0, 2, 1)
    return g.real, g.imag
