"""Exact parameter accounting and config validation of phase7 / phase8 (and the transformer)."""

from __future__ import annotations

import itertools

import pytest
from model_helpers import TINY  # noqa: F401  (registers the models)

from models.config import ConfigError
from models.phase8 import COMPONENTS
from models.registry import count_params, get


def _check(name: str, knobs: dict) -> int:
    entry = get(name)
    config = entry.make_config(knobs)
    exact = count_params(entry.build_on_meta(config))
    assert entry.estimate_params(config) == exact, (name, knobs)
    return exact


BASE = dict(vocab_size=300, d_model=48, n_layers=2, n_heads=4)
SHAPES = [
    dict(),
    dict(embedding="htt"),
    dict(embedding="htt", tie_head=True, htt_rank=5),
    dict(tie_head=True),
    dict(embed_rank_ratio=0.25, ffn_rank_ratio=0.125),
    dict(ffn_rank_ratio=0.0),
    dict(ffn_rank_ratio=0.5, ffn_mult=2),
    dict(bk_channels=12, ar_rank=7, ar_conv_kernel=5, ar_decay="none", window=3),
    dict(bk_channels=1, d_model=30, n_heads=3, vocab_size=2),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_phase7_estimate_exact(shape):
    _check("phase7", {**BASE, **shape})


def _flag_sets():
    for bits in itertools.product((False, True), repeat=len(COMPONENTS)):
        flags = dict(zip(COMPONENTS, bits, strict=False))
        if flags["bk_hyperbolic"] and not flags["linear_attn"]:
            continue
        yield flags


def test_phase8_estimate_exact_every_flag_combination():
    counts = set()
    for flags in _flag_sets():
        counts.add(_check("phase8", {**BASE, **flags}))
    assert len(counts) > 50  # each flag really changes the parameter set


@pytest.mark.parametrize(
    "shape",
    SHAPES
    + [
        dict(lin_attn_mode="exact"),
        dict(lin_attn_mode="auto", d_state=5),
        dict(sheaf=True, sheaf_stalk_dim=3, homology=True, entailment=True),
        dict(hyp_ssm_mode="mobius", fusion_hidden=3),
    ],
)
def test_phase8_estimate_exact_shapes(shape):
    for flags in ({}, {k: True for k in COMPONENTS}, {k: False for k in COMPONENTS}):
        _check("phase8", {**BASE, **flags, **shape})


def test_transformer_estimates():
    for shape in SHAPES[:7]:
        _check("transformer", {**BASE, **{k: v for k, v in shape.items() if k != "htt_rank"}})


def test_large_configs_on_meta():
    """The seed report's sizes as phase7 / phase8 (low-rank embedding d/4, FFN d/8, V = 50257, H = d/128)."""
    for d, layers in ((4096, 32), (2048, 48)):
        knobs = dict(
            vocab_size=50257, d_model=d, n_layers=layers, n_heads=d // 128, embed_rank_ratio=0.25, ffn_rank_ratio=0.125
        )
        p7, p8 = _check("phase7", knobs), _check("phase8", knobs)
        assert p8 > p7


@pytest.mark.parametrize(
    "knobs, field",
    [
        (dict(window=0), "window"),
        (dict(ar_rank=0), "ar_rank"),
        (dict(bk_channels=5), "bk_channels"),
        (dict(bk_causal=False), "bk_causal"),
        (dict(causal=False), "causal"),
        (dict(c_min=2.0, c_max=1.0), "c_min"),
        (dict(curvature_init=50.0), "curvature_init"),
        (dict(v_max=0.0), "v_max"),
        (dict(ar_decay="sometimes"), "ar_decay"),
        (dict(n_heads=5), "n_heads"),
        (dict(window=2.5), "window"),
        (dict(wndow=3), "wndow"),
    ],
)
def test_phase7_config_rejects_nonsense(knobs, field):
    with pytest.raises(ConfigError) as err:
        get("phase7").make_config({**BASE, **knobs})
    assert err.value.field == field


@pytest.mark.parametrize(
    "knobs, field",
    [
        (dict(linear_attn=False), "bk_hyperbolic"),
        (dict(d_state=0), "d_state"),
        (dict(tau=0.0), "tau"),
        (dict(lin_attn_mode="fast"), "lin_attn_mode"),
        (dict(hyp_ssm_mode="serial"), "hyp_ssm_mode"),
        (dict(homology_landmarks=2), "homology_landmarks"),  # two landmarks: one MST edge, a constant ratio
        (dict(lin_attn_curvature_init=100.0), "lin_attn_curvature_init"),
        (dict(lin_attn_geometry="flat"), "lin_attn_geometry"),
        (dict(lin_attn_geometry="euclidean", lin_attn_mode="exact"), "lin_attn_geometry"),
        (dict(entailment="yes"), "entailment"),
    ],
)
def test_phase8_config_rejects_nonsense(knobs, field):
    with pytest.raises(ConfigError) as err:
        get("phase8").make_config({**BASE, **knobs})
    assert err.value.field == field


def test_flops_per_token():
    for name in ("phase7", "phase8"):
        entry = get(name)
        config = entry.make_config(BASE)
        short, long = entry.forward_flops_per_token(config, 512), entry.forward_flops_per_token(config, 4096)
        assert 2 * entry.estimate_params(config) - 2 * 300 * 48 < short <= long < 1.5 * short  # ~O(1) per token
        assert entry.flops_per_token(config, 512, "train") == 3 * short
    exact = get("phase8").make_config({**BASE, "lin_attn_mode": "exact"})
    f = get("phase8").mixer_forward_flops
    assert f(exact, 8192) - f(exact, 4096) >= exact.n_layers * 2.0 * 4096 * exact.d_model  # O(N) per token
