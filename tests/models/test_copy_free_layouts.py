"""The copy-saving formulations of the blocks give the values of the ones they replaced: bit-identical
outputs and grads in float64 and float32 (CPU reference kernels and, with TRITON_INTERPRET=1, the Triton
ones); under bf16 autocast identical outputs and grads equal up to the order of an fp32 sum."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from model_helpers import build

from kernels.backend import backend as kernel_backend
from kernels.backend import triton_interpreted
from kernels.window_attn import window_hyp_attn
from models.layers.ar_ssm import ARSSM
from models.layers.attention import SelfAttention, rotary
from models.layers.autocast import autocast_inputs
from models.layers.gates import channel_scale
from models.layers.hyp_attention import WindowHypAttention
from models.layers.linear_attention import HyperbolicLinearAttention, ball_point
from models.layers.poincare_layers import upcast
from models.phase7 import Phase7Block


def window_forward(self, x):  # before: unbind of the permuted (3, B, H, N, Dh) view
    b, n, d = x.shape
    q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
    o = window_hyp_attn(q, k, v, self.curvature(), F.softplus(upcast(self.beta)), self.window)
    return o.transpose(1, 2).reshape(b, n, d)


def linear_forward(self, x, value_gate=None):  # before: value gate on (B, N, d), then the head split (linear mode)
    from kernels.linear_attn import causal_linear_attn

    b, n, d = x.shape
    q, k, v = self.in_proj(x).view(b, n, 3, d).unbind(2)
    if value_gate is not None:
        v = channel_scale(value_gate, v).to(v.dtype)
    q, k, v = (t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
    q, k = ball_point(q, self.c()), ball_point(k, self.c())
    return self.out_proj(causal_linear_attn(q, k, v).transpose(1, 2).reshape(b, n, d))


def attention_forward(self, x):
    b, n, d = x.shape
    q, k, v = self.in_proj(x).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
    if self.use_rotary:
        q, k = rotary(q), rotary(k)
    return self.out_proj(self._sdpa(q, k, v).transpose(1, 2).reshape(b, n, d))


def ar_ssm_forward(self, x, fusion=None):  # before: every projection reads (and autocast casts) x itself
    b, n, d = x.shape
    local = self.conv(F.pad(x.transpose(1, 2), (self.kernel - 1, 0))).transpose(1, 2)
    g2 = torch.sigmoid(self.gate(x))
    a = self.decay()
    ux = self.proj_u(x)
    inp = (ux * g2).transpose(1, 2)
    if self.decay_raw is not None:
        inp = inp * (1.0 - a)[:, None].to(inp.dtype)
    from kernels.scan import diag_scan

    s = diag_scan(a[None, :, None].expand(b, -1, n), inp)
    low = self.out(s.transpose(1, 2) * (self.proj_v(x) * g2))
    if fusion is not None:
        low = low * fusion(ux).to(low.dtype)
    return local + low


def mix(self, h, fusion=None):
    gate, g_re, g_im = self.bk_gate(h)
    gate = gate.to(h.dtype)
    mixed = channel_scale(gate, self.local(h)) + channel_scale(1 - gate, self.glob(h, fusion))
    return self.w_o(self.norm_mix(mixed)), g_re, g_im


BEFORE = {
    WindowHypAttention: ("forward", window_forward),
    HyperbolicLinearAttention: ("forward", linear_forward),
    SelfAttention: ("forward", attention_forward),
    ARSSM: ("forward", ar_ssm_forward),
    Phase7Block: ("mix", mix),
}


def loss_and_grads(model, ids, before: bool, autocast: bool):
    with contextlib.ExitStack() as stack:
        if before:
            mp = stack.enter_context(pytest.MonkeyPatch.context())
            for cls, (name, fn) in BEFORE.items():
                mp.setattr(cls, name, fn)
        if autocast:
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        model.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = (
            logits.float().logsumexp(-1).mean() + model.aux_loss
            if model.aux_loss is not None
            else logits.float().logsumexp(-1).mean()
        )
        loss.backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def backends():
    return ["torch", "triton"] if triton_interpreted() else ["torch"]


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["phase8", "phase7", "transformer"])
def test_outputs_and_grads_are_bit_identical_to_the_copying_formulation(name, dtype, backend):
    with kernel_backend(backend):
        model, config = build(name, dtype, n_heads=2, d_model=32)
        ids = torch.randint(0, config.vocab_size, (2, 19))
        new, new_grads = loss_and_grads(model, ids, before=False, autocast=False)
        old, old_grads = loss_and_grads(model, ids, before=True, autocast=False)
    assert torch.equal(new, old)
    assert new_grads.keys() == old_grads.keys()
    for key in new_grads:
        if key.endswith("lin_attn.curvature"):  # a sum over every query and key element, ordered by the layout
            torch.testing.assert_close(
                new_grads[key], old_grads[key], rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=0.0, msg=key
            )
        else:
            assert torch.equal(new_grads[key], old_grads[key]), key


@pytest.mark.parametrize("name", ["phase8", "phase7"])
def test_under_autocast_outputs_are_identical_and_grads_equal_up_to_fp32_summation_order(name):
    model, config = build(name, torch.float32, n_heads=2, d_model=32)
    ids = torch.randint(0, config.vocab_size, (2, 19))
    new, new_grads = loss_and_grads(model, ids, before=False, autocast=True)
    old, old_grads = loss_and_grads(model, ids, before=True, autocast=True)
    assert torch.equal(new, old)
    for key in new_grads:
        torch.testing.assert_close(new_grads[key], old_grads[key], rtol=1e-2, atol=1e-5, msg=key)


def test_autocast_inputs_cast_once_and_sum_the_grads_in_float32():
    leaf = torch.randn(3, 5, 8, requires_grad=True)
    x = leaf * 1  # an activation: autocast caches (and reuses) only the casts of leaves
    w = [torch.randn(4, 8) for _ in range(3)]
    assert all(t is x for t in autocast_inputs(x, 3))  # no autocast: x itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        views = autocast_inputs(x, 3)
        assert all(v.dtype == torch.bfloat16 and v.data_ptr() == views[0].data_ptr() for v in views)
        out = sum(F.linear(v, wi).float().sum() for v, wi in zip(views, w, strict=False))
    (grad,) = torch.autograd.grad(out, leaf)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = leaf * 1
        separate = sum(F.linear(x, wi).float().sum() for wi in w)
    (expected,) = torch.autograd.grad(separate, leaf)
    assert grad.dtype == torch.float32
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-6)  # fp32 sums of the same bf16 grads
