"""Model registry: name -> config dataclass, builder, parameter estimate and FLOPs per token.

Register a model with :func:`register`; everything else (spec validation, the orchestrator, studies)
goes through :func:`get`. The registry is filled at import time and read-only afterwards, so it is
safe to read from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import ConfigError, ModelConfig


@dataclass(frozen=True)
class ModelEntry:
    """How to build and account for one registered model."""

    name: str
    config_cls: type[ModelConfig]
    build: Callable[[Any], nn.Module]
    estimate_params: Callable[[Any], int]
    #: forward FLOPs per token of the sequence mixers (everything that is not a matmul with a weight):
    #: (config, seq_len, matmul_only=False); `matmul_only` keeps the matrix products (what a FLOP counter
    #: sees) and leaves out the elementwise estimates
    mixer_forward_flops: Callable[..., float]
    description: str = ""
    #: bumped with every change of the family's math (stored as the run field `model_version` and part of
    #: the config hash, so a changed model is measured anew instead of served from the cache)
    version: int = 1
    #: a user family's forward FLOPs per token, (config, seq_len) -> FLOPs or None where unknown
    #: (models/custom.py); built-in families leave it None and use the formula below
    forward_flops: Callable[[Any, int], float | None] | None = None
    #: registered from user code (models/custom.py), not built into phasebench
    user: bool = False
    #: the model has `hidden(ids)` and `project_to_vocab(x)` (models.CausalLM does), which the chunked loss
    #: head (`loss_chunk_tokens`) needs
    chunked_loss: bool = True

    def make_config(self, knobs: dict[str, Any]) -> ModelConfig:
        return self.config_cls.from_dict(knobs)

    def build_on_meta(self, config: ModelConfig) -> nn.Module:
        """Build without allocating (parameters on the meta device)."""
        with torch.device("meta"):
            return self.build(config)

    def forward_flops_per_token(self, config: ModelConfig, seq_len: int, matmul_only: bool = False) -> float | None:
        """Forward FLOPs per token: 2 x (parameters used in matmuls: all but the embedding table; the few
        norm scales, biases and scalars among them are counted too, < 1%) + an HTT embedding's contraction
        (and tied head) + the mixers' own FLOPs
        (`mixer_forward_flops`: activation-activation products such as attention scores, plus elementwise
        estimates unless `matmul_only`). Checked against torch's FlopCounterMode in tests/models/test_flops.py.
        A user family's own count (`forward_flops`) replaces all of it; None where it is unknown."""
        if self.forward_flops is not None:
            return self.forward_flops(config, seq_len)
        matmul_params = self.estimate_params(config) - _embedding_table_params(config)
        return (
            2.0 * matmul_params
            + _embedding_flops(config)
            + self.mixer_forward_flops(config, seq_len, matmul_only=matmul_only)
        )

    def flops_per_token(self, config: ModelConfig, seq_len: int, mode: str, matmul_only: bool = False) -> float | None:
        """Forward FLOPs in `inference`; 3x forward in the training modes (backward = 2x forward: each product
        gives one for the input and one for the weight gradient). Flash attention's backward runs 2.5x its
        forward, so attention-heavy configs are under-counted by up to attention / (6 x forward)."""
        forward = self.forward_flops_per_token(config, seq_len, matmul_only)
        if forward is None:
            return None
        return forward if mode == "inference" else 3.0 * forward


def _embedding_table_params(config: ModelConfig) -> int:
    """Parameters of the embedding that take part in no per-token weight matmul: the lookup table (unless
    tied: then it is the head's matmul) or all of an HTT embedding (see :func:`_embedding_flops`)."""
    if config.embedding == "htt":
        from .base import embedding_params

        return embedding_params(config)
    return 0 if config.tie_head else config.vocab_size * config.embed_rank


def _embedding_flops(config: ModelConfig) -> float:
    """Forward FLOPs per token of an HTT embedding (and its tied head); 0 for lookup tables."""
    if config.embedding != "htt":
        return 0.0
    from .layers.htt import HTT_RANK, htt_forward_flops

    return htt_forward_flops(config.vocab_size, config.d_model, getattr(config, "htt_rank", HTT_RANK), config.tie_head)


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> ModelEntry:
    """The entry for `name`; ConfigError naming the field `model` when it is unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError("model", name, f"unknown model; registered: {', '.join(names())}") from None


def count_params(module: nn.Module) -> int:
    """Exact number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters())
