"""phase7-seed and phase8-seed: the stand-ins the seed report measured (README.md, "The seed report, reproduced",
has its table beside ours).

Pre-LN blocks `x + Mix(LN x)`, `x + FFN(LN x)` with biases everywhere, bidirectional by default,
low-rank embedding (rank d/4) and FFN (rank d/8), final LN, head without bias. phase7-seed mixes with
multi-head softmax attention, phase8-seed with tangent-space ELU+1 linear attention plus one curvature
scalar per layer (initialised to 0.01). Its attention follows phase8's fix (queries and keys on the ball,
models.layers.linear_attention) with the same parameters: the report's tangent clip never fired at its
widths' c = 0.01 below d ~1,444 (docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import CausalLM, PreNormBlock, embedding_params, head_params
from .config import ModelConfig, knob
from .layers.attention import SelfAttention, attention_params
from .layers.ffn import config_ffn_params, make_ffn
from .layers.linear_attention import HyperbolicLinearAttention, tangent_linear_attention_params


@dataclass
class SeedConfig(ModelConfig):
    embed_rank_ratio: float = knob(0.25, gt=0.0, max=1.0)
    ffn_rank_ratio: float = knob(0.125, min=0.0, max=1.0)
    precision: str = knob("pure_fp16", choices=ModelConfig.__dataclass_fields__["precision"].metadata["choices"])
    causal: bool = knob(False)


def seed_block(config: SeedConfig, linear: bool) -> PreNormBlock:
    d = config.d_model
    if linear:
        mix = HyperbolicLinearAttention(d, config.n_heads, config.causal, c_init=0.01)
    else:
        mix = SelfAttention(d, config.n_heads, config.causal, bias=True, use_rotary=False)
    return PreNormBlock(d, mix, make_ffn(config), nn.LayerNorm)


def build_phase7_seed(config: SeedConfig) -> CausalLM:
    return CausalLM(config, [seed_block(config, linear=False) for _ in range(config.n_layers)], nn.LayerNorm)


def build_phase8_seed(config: SeedConfig) -> CausalLM:
    return CausalLM(config, [seed_block(config, linear=True) for _ in range(config.n_layers)], nn.LayerNorm)


def _estimate(config: SeedConfig, mixer_params: int) -> int:
    d = config.d_model
    ffn = config_ffn_params(config)
    block = 2 * d + mixer_params + ffn + (2 * d if ffn else 0)
    return embedding_params(config) + config.n_layers * block + 2 * d + head_params(config)


def estimate_phase7_seed(config: SeedConfig) -> int:
    return _estimate(config, attention_params(config.d_model, bias=True))


def estimate_phase8_seed(config: SeedConfig) -> int:
    return _estimate(config, tangent_linear_attention_params(config.d_model))
