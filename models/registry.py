"""Model registry: name -> config dataclass, builder, parameter estimate and FLOPs per token.

Register a model with :func:`register`; everything else (spec validation, the orchestrator, studies)
goes through :func:`get`. The registry is filled at import time and read-only afterwards, so it is
safe to read from any thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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
    #: forward FLOPs per token of the sequence mixers (everything that is not a matmul with a weight)
    mixer_forward_flops: Callable[[Any, int], float]
    description: str = ""

    def make_config(self, knobs: dict[str, Any]) -> ModelConfig:
        return self.config_cls.from_dict(knobs)

    def build_on_meta(self, config: ModelConfig) -> nn.Module:
        """Build without allocating (parameters on the meta device)."""
        with torch.device("meta"):
            return self.build(config)

    def forward_flops_per_token(self, config: ModelConfig, seq_len: int) -> float:
        """2 x (parameters used in matmuls: all but the embedding table) + the mixers' own FLOPs."""
        matmul_params = self.estimate_params(config) - _embedding_table_params(config)
        return 2.0 * matmul_params + self.mixer_forward_flops(config, seq_len)

    def flops_per_token(self, config: ModelConfig, seq_len: int, mode: str) -> float:
        """Forward FLOPs in `inference`, 3x forward (forward + backward) in the training modes."""
        forward = self.forward_flops_per_token(config, seq_len)
        return forward if mode == "inference" else 3.0 * forward


def _embedding_table_params(config: ModelConfig) -> int:
    if config.embedding == "htt" or config.tie_head:
        return 0  # tied or factorised tables take part in matmuls
    return config.vocab_size * config.embed_rank


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
