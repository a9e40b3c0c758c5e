"""The Transformer baseline: pre-norm RMSNorm blocks, causal SDPA with rotary positions, GELU FFN."""

from __future__ import annotations

from dataclasses import dataclass

from .base import CausalLM, PreNormBlock, embedding_params, head_params
from .config import ConfigError, ModelConfig, knob
from .layers.attention import SelfAttention, attention_params
from .layers.ffn import config_ffn_params, make_ffn
from .layers.norm import RMSNorm


@dataclass
class TransformerConfig(ModelConfig):
    rotary: bool = knob(True)

    def validate(self) -> None:
        super().validate()
        if self.rotary and self.head_dim % 2:
            raise ConfigError("n_heads", self.n_heads, f"gives odd head dim {self.head_dim}; rotary needs it even")


def build(config: TransformerConfig) -> CausalLM:
    def block() -> PreNormBlock:
        attn = SelfAttention(config.d_model, config.n_heads, config.causal, bias=False, use_rotary=config.rotary)
        return PreNormBlock(config.d_model, attn, make_ffn(config), RMSNorm)

    return CausalLM(config, [block() for _ in range(config.n_layers)], RMSNorm)


def estimate_params(config: TransformerConfig) -> int:
    d = config.d_model
    ffn = config_ffn_params(config)
    block = d + attention_params(d, bias=False) + ffn + (d if ffn else 0)
    return embedding_params(config) + config.n_layers * block + d + head_params(config)
