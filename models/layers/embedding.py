"""Token embeddings: dense, or low-rank `Embedding(V, r) -> Linear(r, d)` (docs/models.md)."""

from __future__ import annotations

import torch
from torch import nn


class LowRankEmbedding(nn.Module):
    """ids: (B, N) -> (B, N, d). rank == d gives a plain dense embedding (no projection)."""

    def __init__(self, vocab_size: int, d_model: int, rank: int):
        super().__init__()
        self.table = nn.Embedding(vocab_size, rank)
        self.proj = nn.Linear(rank, d_model) if rank != d_model else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.table(ids)  # (B, N, r)
        return x if self.proj is None else self.proj(x)  # (B, N, d)


def lowrank_embedding_params(vocab_size: int, d_model: int, rank: int) -> int:
    return vocab_size * rank + (rank * d_model + d_model if rank != d_model else 0)
