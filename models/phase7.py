"""phase7: the ResNet-BK hybrid language model (docs/models.md, "phase7"), readable in one file.

    ids (B, N) -> embedding (low-rank or HTT, no absolute positions) -> L blocks -> RMSNorm -> head

Block (pre-norm, h = norm1(x)):

    gate, g = BKGate(h)                 per channel sigma(s_j |Im g_t| + b_j), g the BK-Core diagonal
    local   = WindowHypAttention(h)     causal window of `window` tokens, score -softplus(beta_h) d_c(q, k)
    glob    = ARSSM(h)                  causal depthwise conv + decayed low-rank scan of rank `ar_rank`
    x       = x + W_o norm_mix(gate * local + (1 - gate) * glob)
    x       = x + FFN(norm2(x))         (low-rank per ffn_rank_ratio; none when it is 0)

Every mixer is causal (the BK-Core's continued fraction, the left-padded conv, the forward scan and the
window all look only at s <= t), so the model is a causal LM for any N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import CausalLM, embedding_params, head_params
from .config import ConfigError, ModelConfig, knob
from .layers.ar_ssm import ARSSM, ar_ssm_forward_flops, ar_ssm_params
from .layers.autocast import autocast_inputs
from .layers.ffn import config_ffn_params, make_ffn
from .layers.gates import BKGate, bk_gate_params, channel_scale
from .layers.hyp_attention import WindowHypAttention, window_attention_forward_flops, window_hyp_attention_params
from .layers.norm import RMSNorm


@dataclass
class Phase7Config(ModelConfig):
    window: int = knob(64, min=1, max=1_000_000, help="causal window of the hyperbolic attention")
    ar_rank: int = knob(32, min=1, max=65536, help="rank R of the AR-SSM low-rank path")
    ar_conv_kernel: int = knob(3, min=1, max=255, help="depthwise causal conv kernel of the AR-SSM")
    ar_decay: str = knob("learned", choices=("learned", "none"), help="learned decay a, or none (a = 1, cumsum)")
    bk_channels: int = knob(0, min=0, max=65536, help="BK-Core channels; 0 = n_heads; must divide d_model")
    bk_causal: bool = knob(True, help="causal BK-Core (false: bidirectional, needs causal=false)")
    v_max: float = knob(5.0, gt=0.0, help="BK-Core potential bound")
    gate_scale_init: float = knob(1.0, help="initial s_j of the BK gate")
    gate_bias_init: float = knob(0.0, help="initial b_j of the BK gate")
    curvature_init: float = knob(0.1, gt=0.0, help="initial curvature of every Poincare ball")
    c_min: float = knob(1e-4, gt=0.0, help="lower clamp of learned curvatures")
    c_max: float = knob(10.0, gt=0.0, help="upper clamp of learned curvatures")
    htt_rank: int = knob(16, min=1, max=4096, help="TT rank of the HTT embedding")

    @property
    def channels(self) -> int:
        return self.bk_channels or self.n_heads

    def validate(self) -> None:
        super().validate()
        if not self.causal:
            raise ConfigError(
                "causal",
                self.causal,
                f"{type(self).__name__} models are causal LMs; only the BK-Core itself has a bidirectional form",
            )
        if not self.bk_causal:
            raise ConfigError(
                "bk_causal",
                self.bk_causal,
                "a bidirectional BK-Core sees future tokens; "
                "it is for encoders (causal=false), which this causal LM is not",
            )
        if self.d_model % self.channels:
            raise ConfigError("bk_channels", self.bk_channels, f"must divide d_model={self.d_model}")
        if self.c_min >= self.c_max:
            raise ConfigError("c_min", self.c_min, f"must be < c_max={self.c_max}")
        if not self.c_min <= self.curvature_init <= self.c_max:
            raise ConfigError(
                "curvature_init", self.curvature_init, f"must lie in [c_min, c_max] = [{self.c_min}, {self.c_max}]"
            )


class Phase7Block(nn.Module):
    """x: (B, N, d) -> (B, N, d). `fusion` (phase8) scales the AR-SSM low-rank path per token."""

    def __init__(self, config: Phase7Config):
        super().__init__()
        d, c = config.d_model, config
        self.norm1 = RMSNorm(d)
        self.bk_gate = BKGate(d, c.channels, c.bk_causal, c.v_max, c.gate_scale_init, c.gate_bias_init)
        self.local = WindowHypAttention(d, c.n_heads, c.window, c.curvature_init, c.c_min, c.c_max)
        self.glob = ARSSM(d, c.ar_rank, c.ar_conv_kernel, decay=c.ar_decay == "learned")
        self.norm_mix = RMSNorm(d)
        self.w_o = nn.Linear(d, d, bias=False)
        self.ffn = make_ffn(config)
        self.norm2 = RMSNorm(d) if self.ffn is not None else None

    def mix(self, h: torch.Tensor, fusion: nn.Module | None = None):
        """h = norm1(x) (B, N, d) -> (mixer output (B, N, d), g_re, g_im (B, N, C))."""
        h_bk, h_local = autocast_inputs(h, 2)  # both read h through a projection: one autocast cast
        gate, g_re, g_im = self.bk_gate(h_bk)  # (B, N, C)
        gate = gate.to(h.dtype)
        local = self.local(h_local)  # (B, N, d)
        glob = self.glob(h, fusion)  # (B, N, d)
        mixed = channel_scale(gate, local) + channel_scale(1 - gate, glob)  # (B, N, d)
        return self.w_o(self.norm_mix(mixed)), g_re, g_im

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.ffn is None else x + self.ffn(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _, _ = self.mix(self.norm1(x))
        return self.feed_forward(x + out)


def build(config: Phase7Config) -> CausalLM:
    return CausalLM(config, [Phase7Block(config) for _ in range(config.n_layers)], RMSNorm)


def block_params(config: Phase7Config) -> int:
    d, c = config.d_model, config
    ffn = config_ffn_params(config)
    return (
        d
        + bk_gate_params(d, c.channels)
        + window_hyp_attention_params(d, c.n_heads)
        + ar_ssm_params(d, c.ar_rank, c.ar_conv_kernel, c.ar_decay == "learned")
        + d
        + d * d
        + ffn
        + (d if ffn else 0)
    )


def estimate_params(config: Phase7Config) -> int:
    return embedding_params(config) + config.n_layers * block_params(config) + config.d_model + head_params(config)


def block_mixer_flops(config: Phase7Config, seq_len: int, matmul_only: bool = False) -> float:
    """Forward FLOPs per token of one block beyond its weights (which count as 2 x params):

    - window attention, :func:`window_attention_forward_flops` (Gram entries and p . v, matrix products;
      ~10 elementwise per score);
    - elementwise, left out with `matmul_only`: BK-Core scan (~30 per channel and scan level: complex 2x2
      products and rescaling, log2 N levels), AR-SSM scan and products (:func:`ar_ssm_forward_flops`),
      gate mixing (6 d).
    """
    c = config
    attention = window_attention_forward_flops(c.d_model, c.n_heads, c.window, seq_len, matmul_only)
    if matmul_only:
        return attention
    return (
        attention
        + 30.0 * c.channels * max(1, int(seq_len).bit_length())
        + ar_ssm_forward_flops(c.d_model, c.ar_rank, c.ar_conv_kernel)
        + 6.0 * c.d_model
    )


def mixer_forward_flops(config: Phase7Config, seq_len: int, matmul_only: bool = False) -> float:
    """Mixer FLOPs per token over all layers (:func:`block_mixer_flops`); `matmul_only`: matrix products only."""
    return config.n_layers * block_mixer_flops(config, seq_len, matmul_only)
