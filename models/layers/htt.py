"""Tensor-train (HTT) factorised token embedding (docs/models.md, "HTT embedding").

V ~ v1 * v2 and d ~ d1 * d2 with v1 = ceil(sqrt V), d1 = ceil(sqrt d); token t = t1 * v2 + t2.
Cores C1 (v1, r, d1), C2 (v2, r, d2) and phases phi (r,):

    e_t = (1/sqrt r) * sum_r cos(phi_r) C1[t1, r] (x) C2[t2, r]     (outer product, flattened, cropped to d)

`tied_logits` uses the same cores as the LM head: the (V, d) table is formed once per call
(V*r*d multiply-adds, cheaper than contracting per token) and multiplied with x.
"""

from __future__ import annotations

import math

import torch
from torch import nn

HTT_RANK = 16  # default TT rank when a config has no `htt_rank`


def htt_shape(vocab_size: int, d_model: int) -> tuple[int, int, int, int]:
    v1 = math.isqrt(vocab_size - 1) + 1 if vocab_size > 1 else 1  # ceil(sqrt V)
    d1 = math.isqrt(d_model - 1) + 1 if d_model > 1 else 1
    return v1, -(-vocab_size // v1), d1, -(-d_model // d1)


class HTTEmbedding(nn.Module):
    """ids: (B, N) -> (B, N, d)."""

    def __init__(self, vocab_size: int, d_model: int, rank: int = HTT_RANK):
        super().__init__()
        self.vocab_size, self.d_model, self.rank = vocab_size, d_model, rank
        self.v1, self.v2, self.d1, self.d2 = htt_shape(vocab_size, d_model)
        self.core1 = nn.Parameter(torch.randn(self.v1, rank, self.d1))
        self.core2 = nn.Parameter(torch.randn(self.v2, rank, self.d2))
        # phases away from 0 so that d cos(phi)/d phi = -sin(phi) is not zero at init
        self.phase = nn.Parameter(torch.empty(rank).uniform_(-math.pi / 3, math.pi / 3))

    def _weights(self) -> torch.Tensor:
        return torch.cos(self.phase) / math.sqrt(self.rank)  # (r,)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        a = self.core1[ids // self.v2]  # (B, N, r, d1)
        b = self.core2[ids % self.v2]  # (B, N, r, d2)
        e = torch.einsum("bnra,bnrc,r->bnac", a, b, self._weights())  # (B, N, d1, d2)
        return e.flatten(-2)[..., : self.d_model]  # (B, N, d)

    def table(self) -> torch.Tensor:
        """The full (V, d) embedding table."""
        e = torch.einsum("ira,jrc,r->ijac", self.core1, self.core2, self._weights())  # (v1, v2, d1, d2)
        return e.reshape(self.v1 * self.v2, self.d1 * self.d2)[: self.vocab_size, : self.d_model]

    def tied_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, d) -> logits (B, N, V) through the same cores."""
        return x @ self.table().to(x.dtype).T


def htt_params(vocab_size: int, d_model: int, rank: int = HTT_RANK) -> int:
    v1, v2, d1, d2 = htt_shape(vocab_size, d_model)
    return v1 * rank * d1 + v2 * rank * d2 + rank


def htt_forward_flops(vocab_size: int, d_model: int, rank: int, tied: bool) -> float:
    """Forward FLOPs per token of the HTT embedding, which has no per-token weight matmul: the contraction
    of the two gathered cores over the rank, 2 r d1 d2; tied, the head x @ table^T adds 2 d V (forming the
    table, 2 V r d1 d2 once per call, is shared by the B N tokens of the call and left out)."""
    _, _, d1, d2 = htt_shape(vocab_size, d_model)
    return 2.0 * rank * d1 * d2 + (2.0 * d_model * vocab_size if tied else 0.0)
