"""Exact causality: changing token s > t, by any amount, leaves every output at positions <= t bit-identical.

Lengths cross the chunk edges of the scans and the linear attention (64 tokens) and are odd. Models: every
family and every mixer knob, float64 on the PyTorch reference path, and float32 on the Triton kernels (under
the interpreter on CPU) wherever a knob changes which kernels run. Mixers: each sequence mixer alone, its
input perturbed by up to 1e6.
"""

from __future__ import annotations

import pytest
import torch
from model_helpers import ALL_ON, build

from kernels.backend import backend, triton_interpreted
from models.layers.ar_ssm import ARSSM
from models.layers.gates import BKGate, HyperbolicFusion
from models.layers.hyp_attention import WindowHypAttention
from models.layers.hyp_ssm import HyperbolicSSM
from models.layers.linear_attention import HyperbolicLinearAttention
from models.layers.phase8_extras import SheafAttention

N = 141  # two chunk edges (63 | 64, 127 | 128), odd
POSITIONS = (0, 7, 62, 63, 64, 126, 127, 139)  # around window (8) and chunk (64) edges
OFFSETS = (1, 2, 9, 65)
MAGNITUDES = (1.0, 1e3, 1e6)


def _check_model(model, positions=POSITIONS, offsets=OFFSETS, n=N):
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (2, n))
    with torch.no_grad():
        ref = model(ids)
        for t in positions:
            for k in offsets:
                if t + k >= n:
                    continue
                ids2 = ids.clone()
                ids2[:, t + k] = (ids2[:, t + k] + 1 + k) % 256
                out = model(ids2)
                assert torch.equal(out[:, : t + 1], ref[:, : t + 1]), (t, k)
                assert not torch.equal(out[:, t + k], ref[:, t + k])  # the change is seen where it happens


MODELS = [
    ("transformer", {}),
    ("phase7-seed", dict(causal=True)),
    ("phase8-seed", dict(causal=True)),
    ("phase7", dict(window=8)),
    ("phase7", dict(window=8, embedding="htt", ar_decay="none", tie_head=True)),
    ("phase8", dict(window=8, **ALL_ON)),
    ("phase8", dict(window=8, lin_attn_geometry="euclidean")),
    ("phase8", dict(window=8, lin_attn_mode="exact", hyp_ssm_mode="mobius", sheaf=True)),
    ("phase8", dict(window=8, lin_attn_mode="auto", lin_attn_auto_threshold=5.0)),
]


@pytest.mark.parametrize("name, knobs", MODELS)
def test_model_causal(name, knobs):
    model, _ = build(name, torch.float64, **knobs)
    model.eval()
    with backend("torch"):
        _check_model(model)


#: the models on the Triton kernels: all but lin_attn_mode="auto", which at its initial curvature (1.0, under the
#: threshold 5.0) runs the linear attention's kernels as the phase8 rows before it do (test_model_causal runs it)
TRITON_MODELS = [m for m in MODELS if m[1].get("lin_attn_mode") != "auto"]


@pytest.mark.skipif(not triton_interpreted(), reason="the Triton path on CPU needs TRITON_INTERPRET=1 at import")
@pytest.mark.parametrize("name, knobs", TRITON_MODELS)
def test_model_causal_on_the_triton_kernels(name, knobs):
    model, _ = build(name, torch.float32, d_model=16, n_layers=1, n_heads=2, **knobs)
    model.eval()
    with backend("triton"):
        _check_model(model, positions=(62, 63), offsets=(1,), n=71)  # inside a chunk and across its edge


def _mixers():
    d, h = 16, 4
    yield "window_hyp_attention", WindowHypAttention(d, h, 8, 0.5, 1e-4, 10.0)
    yield "ar_ssm", ARSSM(d, 5, 3, decay=True)
    fusion = HyperbolicFusion(8, 0.7)
    ar = ARSSM(d, 5, 3, decay=False)
    yield "ar_ssm_fusion", lambda x: ar(x, fusion)
    bk = BKGate(d, h, True, 5.0, 1.0, 0.0)
    yield "bk_gate", lambda x: torch.cat(bk(x), dim=-1)
    yield "linear_attention", HyperbolicLinearAttention(d, h, causal=True, bias=False, c_bounds=(1e-4, 10.0))
    yield "linear_attention_euclidean", HyperbolicLinearAttention(d, h, causal=True, geometry="euclidean")
    yield "exact_hyp_attention", HyperbolicLinearAttention(d, h, causal=True, mode="exact")
    yield "hyp_ssm", HyperbolicSSM(d, 6, "parallel", 0.5, 1e-4, 10.0)
    yield "hyp_ssm_mobius", HyperbolicSSM(d, 6, "mobius", 0.5, 1e-4, 10.0)
    yield "sheaf", SheafAttention(d, h, 3)


def _as_dtype(mixer, dtype):
    if isinstance(mixer, torch.nn.Module):
        return mixer.to(dtype)
    for obj in mixer.__closure__ or ():  # closures over modules
        if isinstance(obj.cell_contents, torch.nn.Module):
            obj.cell_contents.to(dtype)
    return mixer


def _check_mixer(name, mixer, x, positions=POSITIONS, offsets=OFFSETS):
    with torch.no_grad():
        ref = mixer(x)
        for t in positions:
            for k in offsets:
                if t + k >= x.shape[1]:
                    continue
                for magnitude in MAGNITUDES:
                    x2 = x.clone()
                    x2[:, t + k] += magnitude * torch.randn(2, 16, dtype=x.dtype)
                    out = mixer(x2)
                    assert torch.equal(out[:, : t + 1], ref[:, : t + 1]), (name, t, k, magnitude)
                    assert not torch.equal(out[:, t + k], ref[:, t + k])


@pytest.mark.parametrize("name", [name for name, _ in _mixers()])
def test_mixer_causal(name):
    torch.manual_seed(0)
    mixer = _as_dtype(dict(_mixers())[name], torch.float64)
    with backend("torch"):
        _check_mixer(name, mixer, torch.randn(2, N, 16, dtype=torch.float64))


@pytest.mark.skipif(not triton_interpreted(), reason="the Triton path on CPU needs TRITON_INTERPRET=1 at import")
@pytest.mark.parametrize("name", [name for name, _ in _mixers()])
def test_mixer_causal_on_the_triton_kernels(name):
    """float32 through the Triton kernels, inputs up to 1e6 inside a chunk and across its edge."""
    torch.manual_seed(0)
    mixer = _as_dtype(dict(_mixers())[name], torch.float32)
    with backend("triton"):
        _check_mixer(name, mixer, torch.randn(2, 71, 16), positions=(62, 63), offsets=(1,))
