"""Diagonal (element-wise) first-order linear recurrence, pure PyTorch.

    h_t = a_t * h_{t-1} + b_t,   h_{-1} = 0            (reverse: h_t = a_t * h_{t+1} + b_t, from t = N-1 down)

a, b: (B, C, N), the scan runs over the last dim. Accumulation in float32 (float64 stays float64);
the output has b's dtype.

`diag_scan_sequential` is the test oracle (one step per position). `diag_scan_ref` is the vectorised
form used on CPU: a log-step (Hillis-Steele) scan inside chunks, the same scan over the chunk totals,
then one fused carry-in per chunk. It only multiplies and adds (no cumprod division, no logs), so it
stays exact when a is tiny or zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _acc_dtype(*xs: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def diag_scan_sequential(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Oracle: a Python loop over positions. a, b: (B, C, N) -> h: (B, C, N)."""
    a, b = torch.broadcast_tensors(a, b)
    acc = _acc_dtype(a, b)
    af, bf = a.to(acc), b.to(acc)
    n = a.shape[-1]
    h = torch.zeros(a.shape[:-1], dtype=acc, device=a.device)
    out = []
    steps = range(n - 1, -1, -1) if reverse else range(n)
    for t in steps:
        h = af[..., t] * h + bf[..., t]
        out.append(h)
    if reverse:
        out.reverse()
    if not out:
        return b.clone()
    return torch.stack(out, dim=-1).to(b.dtype)


def _log_step_scan(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan over the last dim of the affine maps h -> a h + b (composition order kept).

    Returns (A, Bc) with h_t = A_t * h_init + Bc_t. Out-of-place so autograd can go through it.
    """
    n = a.shape[-1]
    shift = 1
    while shift < n:
        # combine (a_prev, b_prev) then (a, b): (a_prev * a, a * b_prev + b)
        a_prev = F.pad(a[..., :-shift], (shift, 0), value=1.0)
        b_prev = F.pad(b[..., :-shift], (shift, 0), value=0.0)
        b = a * b_prev + b
        a = a * a_prev
        shift *= 2
    return a, b


def diag_scan_ref(a: torch.Tensor, b: torch.Tensor, reverse: bool = False, chunk_size: int = 64) -> torch.Tensor:
    """Vectorised chunked scan. a, b: (B, C, N) -> h: (B, C, N), dtype of b."""
    a, b = torch.broadcast_tensors(a, b)
    out_dtype = b.dtype
    acc = _acc_dtype(a, b)
    af, bf = a.to(acc), b.to(acc)
    if reverse:
        af, bf = af.flip(-1), bf.flip(-1)
    n = af.shape[-1]
    if n == 0:
        return b.clone()
    L = max(1, min(chunk_size, n))
    nc = -(-n // L)
    pad = nc * L - n
    if pad:
        af = F.pad(af, (0, pad), value=1.0)
        bf = F.pad(bf, (0, pad), value=0.0)
    lead = af.shape[:-1]
    ac = af.reshape(*lead, nc, L)
    bc = bf.reshape(*lead, nc, L)
    A, Bc = _log_step_scan(ac, bc)  # within chunk, starting from 0
    # scan over chunk totals: state at the end of chunk j
    Atot, Btot = _log_step_scan(A[..., -1], Bc[..., -1])  # (..., nc)
    carry = F.pad(Btot[..., :-1], (1, 0), value=0.0)  # state entering chunk j
    h = Bc + A * carry.unsqueeze(-1)
    h = h.reshape(*lead, nc * L)[..., :n]
    if reverse:
        h = h.flip(-1)
    return h.to(out_dtype)
