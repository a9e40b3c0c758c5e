"""Exact causality of a sequence op: a change at token s > t, however large, leaves output t bit-identical."""

from __future__ import annotations

import torch

#: lengths of several 16-token chunks, odd and even, and the positions just before and at chunk edges
LENGTHS = (47, 64, 97)
MAGNITUDES = (1.0, 1e3, 1e6)


def assert_exactly_causal(op, inputs: list[torch.Tensor], chunk: int) -> None:
    """op(*inputs) -> (B, H, N, D); inputs (B, H, N, D_i). Perturbs every input at the tokens right after
    each chunk edge t (inside the chunk and in the next one) by up to 1e6 and compares bitwise."""
    n = inputs[0].shape[-2]
    ref = op(*inputs)
    g = torch.Generator().manual_seed(n)
    for t in sorted({min(n - 2, e) for e in range(chunk - 1, n, chunk)} | {0, n // 2}):
        for s in {t + 1, min(n - 1, t + chunk // 2)}:
            for magnitude in MAGNITUDES:
                changed = [x.clone() for x in inputs]
                for x in changed:
                    x[..., s, :] = magnitude * torch.randn(x[..., s, :].shape, generator=g, dtype=x.dtype)
                out = op(*changed)
                assert torch.equal(out[..., : t + 1, :], ref[..., : t + 1, :]), (n, t, s, magnitude)
