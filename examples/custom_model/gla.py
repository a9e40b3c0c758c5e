"""Gated linear attention (GLA; Yang et al. 2023, arXiv:2312.06635) as a user model family, `gla`.

Per head, with a data-dependent forget gate alpha_t in (0, 1)^Dk:

    S_t = diag(alpha_t) S_{t-1} + k_t^T v_t        (Dk, Dv) state
    o_t = q_t S_t                                   causal, O(N) time and memory

`gla_chunked` is the parallel form the model runs; `gla_recurrent_ref` (end of file) is the definition,
one token at a time. Importing this file registers the family: `phasebench run examples/custom_model/gla.yaml`
(docs/custom-models.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import models
from models import ConfigError, knob
from models.layers.ffn import make_ffn
from models.layers.norm import RMSNorm

#: log alpha = logsigmoid(logits) / 16: gates start close to 1 (long memory), as in the paper
GATE_NORMALIZER = 16.0
#: tokens that meet pairwise inside a chunk (the paper's secondary chunks)
SUB_CHUNK = 16


@dataclass
class GLAConfig(models.ModelConfig):
    """Gated linear attention: a low-rank, data-dependent forget gate per key channel."""

    expand_k: float = knob(0.5, gt=0.0, max=4.0, help="key dim per head, as a fraction of the head dim")
    gate_low_rank: int = knob(16, min=1, max=1024, help="rank of the forget gate's projection")
    chunk_size: int = knob(64, choices=(16, 32, 64, 128, 256), help="tokens per chunk (speed and memory only)")

    @property
    def key_dim(self) -> int:
        return round(self.expand_k * self.head_dim)

    def validate(self) -> None:
        super().validate()
        if self.key_dim < 1:
            raise ConfigError("expand_k", self.expand_k, f"gives key dim < 1 at head dim {self.head_dim}")
        if not self.causal:
            raise ConfigError("causal", self.causal, "gla is causal only")


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, N, H * D) -> (B, H, N, D)."""
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)


class GatedLinearAttention(nn.Module):
    """x: (B, N, d) -> (B, N, d). GLA with alpha_t = sigmoid(x_t W_1 W_2 + b)^(1/16) (W_1 W_2 of rank
    `gate_rank`), each head's output RMS-normalised, then gated by SiLU(x W_g)."""

    def __init__(self, d_model: int, n_heads: int, key_dim: int, gate_rank: int, chunk_size: int):
        super().__init__()
        self.n_heads, self.key_dim, self.chunk_size = n_heads, key_dim, chunk_size
        self.q = nn.Linear(d_model, n_heads * key_dim, bias=False)
        self.k = nn.Linear(d_model, n_heads * key_dim, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.forget = nn.Sequential(nn.Linear(d_model, gate_rank, bias=False), nn.Linear(gate_rank, n_heads * key_dim))
        self.out_gate = nn.Linear(d_model, d_model)
        self.head_norm = RMSNorm(d_model // n_heads)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.n_heads
        q = split_heads(self.q(x), h) * self.key_dim**-0.5  # (B, H, N, Dk)
        k = split_heads(self.k(x), h)  # (B, H, N, Dk)
        v = split_heads(self.v(x), h)  # (B, H, N, Dv)
        logits = self.forget(x).to(torch.promote_types(x.dtype, torch.float32))  # fp32 gates (fp64 kept)
        log_alpha = split_heads(F.logsigmoid(logits) / GATE_NORMALIZER, h)  # (B, H, N, Dk), < 0
        o = gla_chunked(q, k, v, log_alpha, self.chunk_size)  # (B, H, N, Dv)
        o = self.head_norm(o.transpose(1, 2)).flatten(2)  # (B, N, d)
        return self.out(o * F.silu(self.out_gate(x)))  # (B, N, d)


def gla_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_alpha: torch.Tensor,
    chunk_size: int = 64,
    sub_chunk: int = SUB_CHUNK,
) -> torch.Tensor:
    """q, k, log_alpha <= 0: (B, H, N, Dk), v: (B, H, N, Dv) -> o: (B, H, N, Dv) in v's dtype; fp32 math
    (fp64 kept).

    Chunks of `chunk_size` tokens hand a (Dk, Dv) state on to the next. Inside a chunk every exponent is a
    difference of cumulative log-gates that is <= 0, never a lone -b_s (which overflows once a chunk has
    forgotten more than e^88): tokens of one sub-chunk meet pairwise, tokens of earlier sub-chunks through
    the cumulative gate at the start of the query's sub-chunk. Shapes only steer the Python: no host sync.
    """
    n, c = q.shape[2], min(sub_chunk, chunk_size)
    if chunk_size % c:
        raise ValueError(f"chunk_size {chunk_size} is not a multiple of sub_chunk {c}")
    out_dtype, acc = v.dtype, torch.promote_types(v.dtype, torch.float32)
    pad = -n % chunk_size  # padded tokens come after every real one; their outputs are dropped
    q, k, v, g = (F.pad(x.to(acc), (0, 0, 0, pad)).unflatten(2, (-1, chunk_size)) for x in (q, k, v, log_alpha))
    b = g.cumsum(-2)  # (B, H, nC, C, Dk): log of alpha's product from the chunk's start to t, inclusive

    # 1. earlier chunks, through the state S entering each chunk
    last = b[..., -1:, :]  # (B, H, nC, 1, Dk)
    writes = (k * (last - b).exp()).transpose(-1, -2) @ v  # (B, H, nC, Dk, Dv): a chunk's k^T v at its end
    decay = last.transpose(-1, -2).exp()  # (B, H, nC, Dk, 1): a whole chunk's forget gate
    states = [torch.zeros_like(writes[:, :, 0])]  # (B, H, Dk, Dv)
    for i in range(writes.shape[2] - 1):
        states.append(decay[:, :, i] * states[-1] + writes[:, :, i])
    o = (q * b.exp()) @ torch.stack(states, dim=2)  # (B, H, nC, C, Dv)

    # 2. earlier sub-chunks of the same chunk, through r_i = b just before sub-chunk i
    ns = chunk_size // c
    qs, ks, vs, bs = (x.unflatten(3, (ns, c)) for x in (q, k, v, b))  # (B, H, nC, nS, c, D)
    r = F.pad(bs[..., :-1, -1, :], (0, 0, 1, 0))  # (B, H, nC, nS, Dk), 0 before the first sub-chunk
    s_pos, starts = torch.arange(chunk_size, device=q.device), c * torch.arange(ns, device=q.device)
    before = (s_pos < starts[:, None])[..., None]  # (nS, C, 1): key s lies before sub-chunk i
    k_gap = (r.unsqueeze(-2) - b.unsqueeze(3)).masked_fill(~before, float("-inf"))  # (B, H, nC, nS, C, Dk), <= 0
    q_gap = bs - r.unsqueeze(-2)  # (B, H, nC, nS, c, Dk), <= 0
    scores = (qs * q_gap.exp()) @ (k.unsqueeze(3) * k_gap.exp()).transpose(-1, -2)  # (B, H, nC, nS, c, C)
    o = o + (scores @ v.unsqueeze(3)).flatten(3, 4)  # (B, H, nC, C, Dv)

    # 3. the same sub-chunk, pairwise: b_t - b_s <= 0 for s <= t
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()[..., None]  # (c, c, 1)
    gap = (bs.unsqueeze(-2) - bs.unsqueeze(-3)).masked_fill(~causal, float("-inf"))  # (B, H, nC, nS, c, c, Dk)
    scores = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * gap.exp()).sum(-1)  # (B, H, nC, nS, c, c)
    o = o + (scores @ vs).flatten(3, 4)  # (B, H, nC, C, Dv)
    return o.flatten(2, 3)[:, :, :n].to(out_dtype)  # (B, H, N, Dv)


def build_gla(config: GLAConfig) -> nn.Module:
    """ids (B, N) -> logits (B, N, V): the CausalLM shell around pre-norm GLA + FFN blocks."""

    def block() -> nn.Module:
        mix = GatedLinearAttention(
            config.d_model, config.n_heads, config.key_dim, config.gate_low_rank, config.chunk_size
        )
        return models.PreNormBlock(config.d_model, mix, make_ffn(config), RMSNorm)

    return models.CausalLM(config, [block() for _ in range(config.n_layers)], RMSNorm)


models.register_family(
    "gla", GLAConfig, build_gla, description="gated linear attention: low-rank data-dependent forget gate, O(N)"
)


def gla_recurrent_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor) -> torch.Tensor:
    """The definition, token by token (test oracle). Shapes and dtype as `gla_chunked`."""
    state = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])  # (B, H, Dk, Dv)
    out = []
    for t in range(q.shape[2]):
        alpha = log_alpha[:, :, t, :, None].exp()  # (B, H, Dk, 1)
        state = alpha * state + k[:, :, t, :, None] * v[:, :, t, None, :]  # (B, H, Dk, Dv)
        out.append(q[:, :, t, None, :] @ state)  # (B, H, 1, Dv)
    return torch.cat(out, dim=2)  # (B, H, N, Dv)
