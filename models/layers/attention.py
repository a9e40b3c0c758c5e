"""Softmax self-attention through `scaled_dot_product_attention`, with optional rotary embedding."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

_PREFERENCE = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)


@functools.lru_cache(maxsize=32)
def rotary_tables(n: int, dh: int, base: float, device: torch.device, dtype: torch.dtype):
    """(cos, sin), each (N, Dh/2) in `dtype`: built once per (length, head dim, device, dtype), not twice per
    layer per call (host work that an eager step pays at every layer). Built outside inference mode, so a
    table first made under `torch.inference_mode` still serves autograd later."""
    with torch.inference_mode(False), torch.no_grad():
        inv_freq = base ** (-torch.arange(0, dh, 2, device=device, dtype=torch.float32) / dh)  # (Dh/2,)
        angles = torch.arange(n, device=device, dtype=torch.float32)[:, None] * inv_freq  # (N, Dh/2)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding. x: (B, H, N, Dh) with Dh even -> same shape."""
    cos, sin = rotary_tables(x.shape[-2], x.shape[-1], base, x.device, x.dtype)  # (N, Dh/2) each
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, N, Dh/2)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def heads(qkv: torch.Tensor, n_heads: int) -> tuple[torch.Tensor, ...]:
    """qkv (B, N, 3 d) -> q, k, v (B, H, N, Dh), views.

    Unbound along the q/k/v axis before the head transpose, so that in backward the stack of the three
    head-major grads writes (B, N, 3, H, Dh) in place: unbinding the permuted (3, B, H, N, Dh) view
    instead stacked them head-major and then copied the stack to the projection's layout (3 activations).
    """
    b, n, three_d = qkv.shape
    return tuple(t.transpose(1, 2) for t in qkv.view(b, n, 3, n_heads, three_d // (3 * n_heads)).unbind(2))


class SelfAttention(nn.Module):
    """x: (B, N, d) -> (B, N, d). Records the SDPA backend that ran in `backend_used`."""

    def __init__(self, d_model: int, n_heads: int, causal: bool, bias: bool, use_rotary: bool):
        super().__init__()
        self.n_heads, self.causal, self.use_rotary = n_heads, causal, use_rotary
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.backend_used: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = heads(self.in_proj(x), self.n_heads)  # (B, H, N, Dh) each
        if self.use_rotary:
            q, k = rotary(q), rotary(k)  # (B, H, N, Dh)
        o = self._sdpa(q, k, v)  # (B, H, N, Dh)
        return self.out_proj(o.transpose(1, 2).reshape(b, n, d))

    def _sdpa(self, q, k, v):
        if torch.compiler.is_compiling():
            # a traced call cannot try a backend and fall back on its error: the dispatcher picks
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        if not q.is_cuda:
            self.backend_used = "cpu"
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        for backend in _PREFERENCE:
            try:
                with sdpa_kernel(backend):
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
            except RuntimeError:
                continue
            self.backend_used = backend.name.lower()
            return out
        raise RuntimeError("no scaled_dot_product_attention backend accepts these inputs")


def attention_params(d_model: int, bias: bool) -> int:
    return 4 * d_model * d_model + (4 * d_model if bias else 0)


def sdpa_forward_flops(d_model: int, seq_len: int, causal: bool) -> float:
    """Forward FLOPs per token of one layer's `scaled_dot_product_attention` (all heads).

    scores QK^T (2 N d) + weighted values PV (2 N d) = 4 N d; causal: half of it, the tiles flash
    attention runs (it skips the tiles above the diagonal; the half-masked diagonal tiles, ~block/(2N) more,
    are left out). Softmax and rotary are elementwise (~5 per score, < 2% at Dh >= 64) and not counted.
    """
    full = 4.0 * seq_len * d_model
    return full / 2 if causal else full


def attention_forward_flops(config, seq_len: int, matmul_only: bool = False) -> float:
    """Mixer FLOPs per token over all layers: :func:`sdpa_forward_flops` per layer (matrix products only,
    so `matmul_only` changes nothing)."""
    return config.n_layers * sdpa_forward_flops(config.d_model, seq_len, config.causal)
