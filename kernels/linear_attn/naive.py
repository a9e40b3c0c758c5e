"""Causal normalised linear attention with the ELU+1 feature map, pure PyTorch.

    phi(x) = elu(x) + 1
    o_t = phi(q_t) S_t / (phi(q_t) . z_t + eps),  S_t = sum_{s<=t} phi(k_s) v_s^T,  z_t = sum_{s<=t} phi(k_s)

q, k: (B, H, N, Dk), v: (B, H, N, Dv) -> o: (B, H, N, Dv) in v's dtype; float32 accumulation
(float64 stays float64).

`causal_linear_attn_quadratic` is the N x N masked definition (test oracle).
`causal_linear_attn_chunked` is the O(N)-memory chunked form the models use on CPU: per chunk a masked
chunk x chunk product, plus the state of all earlier chunks (an exclusive cumulative sum of per-chunk
phi(k)^T v, i.e. O(N/chunk * Dk * Dv) memory). The prefix is summed over earlier chunks only, never
formed as `cumsum - x`, so no bit of a later token reaches an earlier one (exact causality).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _acc_dtype(*xs: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def elu_feature(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 (positive)."""
    return F.elu(x) + 1.0


def exclusive_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """out[i] = sum_{j < i} x[j] along `dim`, without subtraction: `cumsum(x) - x` would carry the rounding
    of x[i] (a later token of the same chunk) into the state that chunk i reads, a causality leak."""
    shifted = x.narrow(dim, 0, x.shape[dim] - 1)
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    return torch.cat([zero, torch.cumsum(shifted, dim=dim)], dim=dim)


def causal_linear_attn_quadratic(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Oracle. q, k: (B, H, N, Dk), v: (B, H, N, Dv) -> o: (B, H, N, Dv)."""
    acc = _acc_dtype(q, k, v)
    fq, fk, vf = elu_feature(q.to(acc)), elu_feature(k.to(acc)), v.to(acc)
    n = q.shape[-2]
    A = fq @ fk.transpose(-1, -2)
    mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    A = A.masked_fill(~mask, 0.0)
    num = A @ vf
    den = A.sum(-1, keepdim=True) + eps
    return (num / den).to(v.dtype)


def causal_linear_attn_chunked(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6, chunk_size: int = 64
) -> torch.Tensor:
    """Chunked form, O(N) memory. q, k: (B, H, N, Dk), v: (B, H, N, Dv) -> o: (B, H, N, Dv)."""
    acc = _acc_dtype(q, k, v)
    Bsz, H, n, Dk = q.shape
    Dv = v.shape[-1]
    if n == 0:
        return v.new_zeros(Bsz, H, 0, Dv)
    L = max(1, min(chunk_size, n))
    nc = -(-n // L)
    pad = nc * L - n
    fq = elu_feature(q.to(acc))
    fk = elu_feature(k.to(acc))
    vf = v.to(acc)
    if pad:
        # padded keys must contribute nothing: pad after the feature map, with zeros
        fq = F.pad(fq, (0, 0, 0, pad))
        fk = F.pad(fk, (0, 0, 0, pad))
        vf = F.pad(vf, (0, 0, 0, pad))
    fq = fq.reshape(Bsz, H, nc, L, Dk)
    fk = fk.reshape(Bsz, H, nc, L, Dk)
    vf = vf.reshape(Bsz, H, nc, L, Dv)
    # per-chunk state increments and the exclusive prefix over chunks
    kv = fk.transpose(-1, -2) @ vf  # (B, H, nc, Dk, Dv)
    ksum = fk.sum(-2)  # (B, H, nc, Dk)
    S = exclusive_cumsum(kv, dim=2)  # (B, H, nc, Dk, Dv): the state of chunks < c only
    z = exclusive_cumsum(ksum, dim=2)  # (B, H, nc, Dk)
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    A = (fq @ fk.transpose(-1, -2)).masked_fill(~mask, 0.0)  # (B, H, nc, L, L)
    num = A @ vf + fq @ S
    den = A.sum(-1) + (fq * z.unsqueeze(-2)).sum(-1) + eps
    o = num / den.unsqueeze(-1)
    o = o.reshape(Bsz, H, nc * L, Dv)[:, :, :n]
    return o.to(v.dtype)
