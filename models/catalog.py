"""Registers every model phasebench ships.

Versions (docs/models.md, "Model versions"): phase8 and phase8-seed are at 2 since their linear attention
put queries and keys on the ball (and phase8's homology term became scale-invariant).
"""

from __future__ import annotations

from . import phase7, phase8, seed, transformer
from .layers.attention import attention_forward_flops
from .layers.linear_attention import linear_attention_forward_flops
from .registry import ModelEntry, register

register(
    ModelEntry(
        "transformer",
        transformer.TransformerConfig,
        transformer.build,
        transformer.estimate_params,
        attention_forward_flops,
        "pre-norm Transformer baseline (causal SDPA, rotary, GELU FFN)",
    )
)
register(
    ModelEntry(
        "phase7-seed",
        seed.SeedConfig,
        seed.build_phase7_seed,
        seed.estimate_phase7_seed,
        attention_forward_flops,
        "the seed report's Phase 7 stand-in (bidirectional MHA)",
    )
)
register(
    ModelEntry(
        "phase8-seed",
        seed.SeedConfig,
        seed.build_phase8_seed,
        seed.estimate_phase8_seed,
        linear_attention_forward_flops,
        "the seed report's Phase 8 stand-in (hyperbolic linear attention)",
        version=2,
    )
)

register(
    ModelEntry(
        "phase7",
        phase7.Phase7Config,
        phase7.build,
        phase7.estimate_params,
        phase7.mixer_forward_flops,
        "ResNet-BK hybrid: BK-Core gate, windowed hyperbolic attention, AR-SSM",
    )
)
register(
    ModelEntry(
        "phase8",
        phase8.Phase8Config,
        phase8.build,
        phase8.estimate_params,
        phase8.mixer_forward_flops,
        "phase7 + hyperbolic linear attention, hyperbolic SSM, BK-hyperbolic gate, AR fusion",
        version=2,
    )
)
