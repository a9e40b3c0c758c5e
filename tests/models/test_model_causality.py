"""Causality, bitwise in float64: changing token t + k (k >= 1) leaves outputs at positions <= t unchanged.

Models: transformer, phase7, phase8 (every component on). Mixers: each sequence mixer alone, fed
continuous inputs, perturbing position t + k.
"""
from __future__ import annotations

import pytest
import torch

from models.layers.ar_ssm import ARSSM
from models.layers.gates import BKGate, HyperbolicFusion
from models.layers.hyp_attention import WindowHypAttention
from models.layers.hyp_ssm import HyperbolicSSM
from models.layers.linear_attention import TangentLinearAttention
from models.layers.phase8_extras import SheafAttention

from model_helpers import ALL_ON, build

N = 40
POSITIONS = (0, 7, 8, 15, 23, 38)  # around chunk / window edges (window 8, scan chunks of 64)


def _check_model(model):
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (2, N))
    with torch.no_grad():
        ref = model(ids)
        for t in POSITIONS:
            for k in (1, 2, 9):
                if t + k >= N:
                    continue
                ids2 = ids.clone()
                ids2[:, t + k] = (ids2[:, t + k] + 1 + k) % 256
                out = model(ids2)
                assert torch.equal(out[:, : t + 1], ref[:, : t + 1]), (t, k)
                assert not torch.equal(out[:, t + k], ref[:, t + k])  # the change is seen where it happens


@pytest.mark.parametrize("name, knobs", [
    ("transformer", {}),
    ("phase7", dict(window=8)),
    ("phase7", dict(window=8, embedding="htt", ar_decay="none", tie_head=True)),
    ("phase8", dict(window=8, **ALL_ON)),
    ("phase8", dict(window=8, lin_attn_mode="exact", hyp_ssm_mode="mobius", sheaf=True)),
])
def test_model_causal(name, knobs):
    model, _ = build(name, torch.float64, **knobs)
    model.eval()
    _check_model(model)


def _mixers():
    d, h = 16, 4
    yield "window_hyp_attention", WindowHypAttention(d, h, 8, 0.5, 1e-4, 10.0)
    yield "ar_ssm", ARSSM(d, 5, 3, decay=True)
    fusion = HyperbolicFusion(8, 0.7)
    ar = ARSSM(d, 5, 3, decay=False)
    yield "ar_ssm_fusion", lambda x: ar(x, fusion)
    bk = BKGate(d, h, True, 5.0, 1.0, 0.0)
    yield "bk_gate", lambda x: torch.cat(bk(x), dim=-1)
    yield "linear_attention", TangentLinearAttention(d, h, causal=True, bias=False, c_bounds=(1e-4, 10.0))
    yield "exact_hyp_attention", TangentLinearAttention(d, h, causal=True, mode="exact")
    yield "hyp_ssm", HyperbolicSSM(d, 6, "parallel", 0.5, 1e-4, 10.0)
    yield "hyp_ssm_mobius", HyperbolicSSM(d, 6, "mobius", 0.5, 1e-4, 10.0)
    yield "sheaf", SheafAttention(d, h, 3)


@pytest.mark.parametrize("name", [name for name, _ in _mixers()])
def test_mixer_causal(name):
    torch.manual_seed(0)
    mixer = dict(_mixers())[name]
    if isinstance(mixer, torch.nn.Module):
        mixer.double()
    else:  # closures over modules
        for obj in mixer.__closure__ or ():
            if isinstance(obj.cell_contents, torch.nn.Module):
                obj.cell_contents.double()
    x = torch.randn(2, N, 16, dtype=torch.float64)
    with torch.no_grad():
        ref = mixer(x)
        for t in POSITIONS:
            for k in (1, 3, 17):
                if t + k >= N:
                    continue
                x2 = x.clone()
                x2[:, t + k] += torch.randn(2, 16, dtype=torch.float64)
                out = mixer(x2)
                assert torch.equal(out[:, : t + 1], ref[:, : t + 1]), (name, t, k)
                assert not torch.equal(out[:, t + k], ref[:, t + k])
