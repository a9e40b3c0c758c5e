"""The Transformer baseline: pre-norm RMSNorm blocks, causal SDPA with rotary positions, GELU FFN."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import CausalLM, embedding_params, head_params
from .config import ConfigError, ModelConfig, knob
from .layers.attention import SelfAttention, attention_params
from .layers.ffn import config_ffn_params, make_ffn


@dataclass
class TransformerConfig(ModelConfig):
    rotary: bool = knob(True)

    def validate(self) -> None:
        super().validate()
        if self.rotary and self.head_dim % 2:
            raise ConfigError("n_heads", self.n_heads, f"gives odd head dim {self.head_dim}; rotary needs it even")


class TransformerBlock(nn.Module):
    """x: (B, N, d) -> (B, N, d)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d = config.d_model
        self.norm1 = nn.RMSNorm(d)
        self.attn = SelfAttention(d, config.n_heads, config.causal, bias=False, use_rotary=config.rotary)
        self.ffn = make_ffn(config)
        self.norm2 = nn.RMSNorm(d) if self.ffn is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        if self.ffn is not None:
            x = x + self.ffn(self.norm2(x))
        return x


def build(config: TransformerConfig) -> CausalLM:
    return CausalLM(config, [TransformerBlock(config) for _ in range(config.n_layers)], nn.RMSNorm)


def estimate_params(config: TransformerConfig) -> int:
    d = config.d_model
    ffn = config_ffn_params(config)
    block = d + attention_params(d, bias=False) + ffn + (d if ffn else 0)
    return embedding_params(config) + config.n_layers * block + d + head_params(config)

