"""phase8: phase7 plus hyperbolic extensions on the residual path (docs/models.md, "phase8").

Block (h = norm1(x), Phase 7's block with its FFN, plus each component behind its flag):

    mix, g      = Phase7Block.mix(h, fusion)          ar_fusion: AR-SSM low-rank path * sigma(MLP(2|u_t|/tau))
    x           = x + mix
    x           = x + LinAttn(h, values * BKHypGate(g))   linear_attn: queries, keys on the ball (+ bk_hyperbolic
                                                          gate on its values); lin_attn_geometry: euclidean ablates
    x           = x + HypSSM(h)                       hyp_ssm: tangent-space selective scan, ball readout
    x           = x + Sheaf(h)                        sheaf (off by default)
    x           = x + FFN(norm2(x))
    aux_loss    = Entailment(h) + Homology(h)         entailment, homology (off by default)

Each default-on component adds to the residual stream through its own output projection, so it changes
the logits. The residual stream is Euclidean; components enter the ball with exp0 and leave with log0
(or read features off the ball point, as the linear attention does), and where a round trip cancels
(d_c(0, exp0(u)) = 2|u| of the fusion) the closed form is used (see the layers' docstrings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import CausalLM
from .config import ConfigError, knob
from .layers.gates import BKHyperbolicGate, HyperbolicFusion, bk_hyperbolic_gate_params, hyperbolic_fusion_params
from .layers.hyp_attention import window_attention_forward_flops
from .layers.hyp_ssm import HyperbolicSSM, hyperbolic_ssm_forward_flops, hyperbolic_ssm_params
from .layers.linear_attention import (
    HyperbolicLinearAttention,
    tangent_linear_attention_forward_flops,
    tangent_linear_attention_params,
)
from .layers.norm import RMSNorm
from .layers.phase8_extras import (
    EntailmentCones,
    PersistentHomology,
    SheafAttention,
    entailment_params,
    homology_params,
    sheaf_params,
)
from .phase7 import Phase7Block, Phase7Config, block_mixer_flops
from .phase7 import estimate_params as phase7_estimate

COMPONENTS = ("linear_attn", "hyp_ssm", "bk_hyperbolic", "ar_fusion", "entailment", "homology", "sheaf")


@dataclass
class Phase8Config(Phase7Config):
    linear_attn: bool = knob(True, help="tangent-space causal linear attention branch")
    hyp_ssm: bool = knob(True, help="hyperbolic selective SSM branch")
    bk_hyperbolic: bool = knob(True, help="BK scattering gate on the linear-attention values")
    ar_fusion: bool = knob(True, help="per-token hyperbolic scale of the AR-SSM low-rank path")
    entailment: bool = knob(False, help="entailment-cone auxiliary loss")
    homology: bool = knob(False, help="persistent-homology regulariser")
    sheaf: bool = knob(False, help="sheaf attention branch")
    lin_attn_mode: str = knob("linear", choices=("linear", "exact", "auto"), help="exact is O(N^2)")
    lin_attn_auto_threshold: float = knob(1.0, gt=0.0, help="auto: exact while curvature exceeds this")
    lin_attn_geometry: str = knob(
        "hyperbolic",
        choices=("hyperbolic", "euclidean"),
        help="queries and keys on the Poincare ball, or the Euclidean ablation",
    )
    lin_attn_curvature_init: float = knob(1.0, gt=0.0, help="initial curvature of the linear attention's ball")
    hyp_ssm_mode: str = knob("parallel", choices=("parallel", "mobius"), help="mobius: sequential reference")
    d_state: int = knob(64, min=1, max=65536, help="state size of the hyperbolic SSM")
    tau: float = knob(0.7, gt=0.0, help="temperature of the AR-SSM hyperbolic fusion")
    fusion_hidden: int = knob(32, min=1, max=4096, help="hidden width of the fusion MLP (1 -> h -> 1)")
    entailment_weight: float = knob(0.01, min=0.0, help="weight of the entailment-cone loss")
    homology_weight: float = knob(0.01, min=0.0, help="weight of the homology regulariser")
    homology_landmarks: int = knob(64, min=3, max=4096, help="landmark tokens of the homology regulariser")
    sheaf_stalk_dim: int = knob(0, min=0, max=65536, help="edge-stalk size of sheaf attention; 0 = head dim")

    def graph_blocker(self) -> str | None:
        if self.linear_attn and self.lin_attn_mode == "auto":
            return "lin_attn_mode auto reads the curvature on the host at every forward"
        return super().graph_blocker()

    @property
    def ball_geometry(self) -> str:
        """The linear attention's `geometry` (models.layers.linear_attention): ball or euclidean."""
        return "ball" if self.lin_attn_geometry == "hyperbolic" else "euclidean"

    @property
    def stalk_dim(self) -> int:
        return self.sheaf_stalk_dim or self.head_dim

    def validate(self) -> None:
        super().validate()
        if self.bk_hyperbolic and not self.linear_attn:
            raise ConfigError(
                "bk_hyperbolic", self.bk_hyperbolic, "gates the linear-attention values; needs linear_attn=true"
            )
        if self.lin_attn_geometry == "euclidean" and self.lin_attn_mode != "linear":
            raise ConfigError(
                "lin_attn_geometry",
                self.lin_attn_geometry,
                f"has no curvature; lin_attn_mode {self.lin_attn_mode} needs hyperbolic",
            )
        c_bounds = f"[c_min, c_max] = [{self.c_min}, {self.c_max}]"
        curved = self.linear_attn and self.lin_attn_geometry == "hyperbolic"
        if curved and not self.c_min <= self.lin_attn_curvature_init <= self.c_max:
            raise ConfigError("lin_attn_curvature_init", self.lin_attn_curvature_init, f"must lie in {c_bounds}")


class Phase8Block(Phase7Block):
    """x: (B, N, d) -> (B, N, d); sets `aux_loss` when entailment or homology is on."""

    def __init__(self, config: Phase8Config):
        super().__init__(config)
        d, c = config.d_model, config
        ball = (c.curvature_init, c.c_min, c.c_max)
        self.fusion = HyperbolicFusion(c.fusion_hidden, c.tau) if c.ar_fusion else None
        self.lin_attn = (
            HyperbolicLinearAttention(
                d,
                c.n_heads,
                causal=True,
                bias=False,
                c_init=c.lin_attn_curvature_init,
                mode=c.lin_attn_mode,
                auto_threshold=c.lin_attn_auto_threshold,
                c_bounds=(c.c_min, c.c_max),
                geometry=c.ball_geometry,
            )
            if c.linear_attn
            else None
        )
        self.bk_hyp = BKHyperbolicGate(c.channels) if c.bk_hyperbolic else None
        self.hyp_ssm = HyperbolicSSM(d, c.d_state, c.hyp_ssm_mode, *ball) if c.hyp_ssm else None
        self.sheaf = SheafAttention(d, c.n_heads, c.stalk_dim) if c.sheaf else None
        self.entailment = EntailmentCones(d, c.head_dim, c.entailment_weight, *ball) if c.entailment else None
        self.homology = (
            PersistentHomology(d, c.head_dim, c.homology_landmarks, c.homology_weight, *ball) if c.homology else None
        )
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)  # (B, N, d)
        out, g_re, g_im = self.mix(h, self.fusion)  # (B, N, d), (B, N, C) x 2
        x = x + out
        if self.lin_attn is not None:
            gate = None if self.bk_hyp is None else self.bk_hyp(g_re, g_im).to(h.dtype)  # (B, N, C)
            x = x + self.lin_attn(h, value_gate=gate)  # (B, N, d)
        if self.hyp_ssm is not None:
            x = x + self.hyp_ssm(h)
        if self.sheaf is not None:
            x = x + self.sheaf(h)
        aux = [m(h) for m in (self.entailment, self.homology) if m is not None]
        self.aux_loss = torch.stack(aux).sum() if aux else None
        return self.feed_forward(x)


def build(config: Phase8Config) -> CausalLM:
    return CausalLM(config, [Phase8Block(config) for _ in range(config.n_layers)], RMSNorm)


def extra_block_params(config: Phase8Config) -> int:
    d, c = config.d_model, config
    return (
        (hyperbolic_fusion_params(c.fusion_hidden) if c.ar_fusion else 0)
        + (
            tangent_linear_attention_params(d, False, c.n_heads, c.lin_attn_mode, c.ball_geometry)
            if c.linear_attn
            else 0
        )
        + (bk_hyperbolic_gate_params(c.channels) if c.bk_hyperbolic else 0)
        + (hyperbolic_ssm_params(d, c.d_state) if c.hyp_ssm else 0)
        + (sheaf_params(d, c.n_heads, c.stalk_dim) if c.sheaf else 0)
        + (entailment_params(d, c.head_dim) if c.entailment else 0)
        + (homology_params(d, c.head_dim) if c.homology else 0)
    )


def estimate_params(config: Phase8Config) -> int:
    return phase7_estimate(config) + config.n_layers * extra_block_params(config)


def mixer_forward_flops(config: Phase8Config, seq_len: int, matmul_only: bool = False) -> float:
    """Mixer FLOPs per token over all layers: phase7's :func:`block_mixer_flops` per block plus, per
    component that is on (`matmul_only`: matrix products only, the elementwise terms left out):

    - linear_attn: linear mode :func:`tangent_linear_attention_forward_flops` (causal, chunked); exact/auto
      mode: the windowed-attention kernel over the whole prefix, :func:`window_attention_forward_flops`
      with window = N; auto counts as the mode it starts in (exact while lin_attn_curvature_init exceeds
      the threshold);
    - hyp_ssm: :func:`hyperbolic_ssm_forward_flops` (elementwise);
    - sheaf: head Gram matrix F_i x_i . F_j x_j (2 H^2 Ds, a product), disagreement and softmax (~4 H^2);
    - entailment: exp0 and cone angle of consecutive tokens (~20 Dh, elementwise);
    - homology: the projection runs on the M = min(landmarks, N) landmark tokens only, so
      2 d Dh (M / N - 1) corrects its 2 x params; the landmark Gram matrix 2 M^2 Dh / N; distances ~10 M^2 / N.
    """
    c = config
    n = max(1, int(seq_len))
    per_layer = block_mixer_flops(config, n, matmul_only)
    if c.linear_attn:
        exact = c.lin_attn_mode == "exact" or (
            c.lin_attn_mode == "auto" and c.lin_attn_curvature_init > c.lin_attn_auto_threshold
        )
        if exact:
            per_layer += window_attention_forward_flops(c.d_model, c.n_heads, n, n, matmul_only)
        else:
            per_layer += tangent_linear_attention_forward_flops(c.d_model, c.head_dim, n, causal=True)
    if c.hyp_ssm:
        per_layer += hyperbolic_ssm_forward_flops(c.d_state, matmul_only)
    if c.sheaf:
        per_layer += 2.0 * c.n_heads**2 * c.stalk_dim + (0.0 if matmul_only else 4.0 * c.n_heads**2)
    if c.entailment and not matmul_only:
        per_layer += 20.0 * c.head_dim
    if c.homology:
        m = min(c.homology_landmarks, n)
        per_layer += 2.0 * c.d_model * c.head_dim * (m / n - 1.0) + 2.0 * m * m * c.head_dim / n
        if not matmul_only:
            per_layer += 10.0 * m * m / n
    return c.n_layers * per_layer
