"""The Phase 7 / Phase 8 layers against their definitions (float64): the wiring of the kernels' ops.

The ops themselves (scan, window attention, linear attention, Poincare maps, BK-Core) are tested in
tests/kernels; here each layer is recomputed from docs/models.md with explicit loops.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kernels.bk_core import bk_core_sequential
from kernels.linear_attn import causal_linear_attn_quadratic
from kernels.poincare import dist, dist0, exp0, log0, mobius_add
from models.layers.ar_ssm import ARSSM
from models.layers.gates import BKGate, BKHyperbolicGate, HyperbolicFusion, channel_scale
from models.layers.htt import HTTEmbedding, htt_shape
from models.layers.hyp_attention import WindowHypAttention
from models.layers.hyp_ssm import HyperbolicSSM
from models.layers.linear_attention import HyperbolicLinearAttention
from models.layers.phase8_extras import (
    EntailmentCones,
    PersistentHomology,
    SheafAttention,
    _mst_edges,
    cone_angle,
    normalised_persistence,
)
from models.layers.poincare_layers import Curvature


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


def _randomise(module: torch.nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)


@pytest.mark.parametrize("decay, fused", [(True, False), (False, False), (True, True)])
def test_ar_ssm_equals_its_loop(decay, fused):
    d, r, k, n = 6, 3, 3, 19
    ar = ARSSM(d, r, k, decay=decay)
    fusion = HyperbolicFusion(4, 0.7) if fused else None
    _randomise(ar)
    x = torch.randn(2, n, d)
    a = torch.exp(-F.softplus(ar.decay_raw)) if decay else torch.ones(r)
    w = ar.conv.weight[:, 0]  # (d, k)
    g2 = torch.sigmoid(ar.gate(x))
    s = torch.zeros(2, r)
    expected = []
    for t in range(n):
        conv = ar.conv.bias + sum(w[:, j] * x[:, t - (k - 1) + j] for j in range(k) if t - (k - 1) + j >= 0)
        u = ar.proj_u(x[:, t])
        s = a * s + (1 - a if decay else 1.0) * u * g2[:, t]
        low = ar.out(s * ar.proj_v(x[:, t]) * g2[:, t])
        if fused:
            low = low * torch.sigmoid(fusion.mlp(2 * u.norm(dim=-1, keepdim=True) / math.sqrt(r) / 0.7))
        expected.append(conv + low)
    torch.testing.assert_close(ar(x, fusion), torch.stack(expected, 1), rtol=1e-10, atol=1e-12)


def test_fusion_closed_form_is_the_ball_distance():
    """2|u| / sqrt(R) equals d_c(0, exp0(u / sqrt R)) computed through the ball, for any curvature."""
    u = torch.randn(3, 5, 8) * 0.4
    fusion = HyperbolicFusion(6, 0.7)
    got = fusion(u)
    for c in (0.01, 0.5, 2.0):
        ball = dist0(exp0(u / math.sqrt(8), torch.tensor(c)), torch.tensor(c))
        torch.testing.assert_close(got, torch.sigmoid(fusion.mlp(ball / 0.7)), rtol=1e-9, atol=1e-12)


def test_window_hyperbolic_attention_equals_its_loop():
    d, h, w, n = 8, 2, 5, 17
    attn = WindowHypAttention(d, h, w, 0.3, 1e-4, 10.0)
    _randomise(attn)
    x = torch.randn(2, n, d)
    q, k, v = attn.qkv(x).view(2, n, 3, h, d // h).unbind(2)  # (B, N, H, Dh)
    c, beta = attn.curvature(), F.softplus(attn.beta)
    out = torch.zeros(2, n, h, d // h)
    for t in range(n):
        for j in range(h):
            s = range(max(0, t - w + 1), t + 1)
            qb = exp0(q[:, t, j], c[j])
            score = torch.stack([-beta[j] * dist(qb, exp0(k[:, i, j], c[j]), c[j])[..., 0] for i in s], -1)
            p = torch.softmax(score, -1)  # (B, |s|)
            out[:, t, j] = sum(p[:, m, None] * v[:, i, j] for m, i in enumerate(s))
    torch.testing.assert_close(attn(x), out.reshape(2, n, d), rtol=1e-9, atol=1e-11)


def test_bk_gate_uses_the_sequential_green_function():
    d, ch, n = 8, 4, 13
    gate_mod = BKGate(d, ch, True, 5.0, 1.5, -0.2)
    _randomise(gate_mod, 0.1)
    x = torch.randn(2, n, d)
    core = gate_mod.core
    g_re, g_im = bk_core_sequential(core.potentials(x), core.h0, core.beta, core.e, core.eta())
    gate, r, i = gate_mod(x)
    torch.testing.assert_close(r, g_re, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(i, g_im, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gate, torch.sigmoid(gate_mod.scale * g_im.abs() + gate_mod.bias))
    assert (g_im > 0).all()


def _ball(x, c):
    """sqrt(D) exp0_c(x / sqrt(D)) from the definition of exp0 (docs/models.md)."""
    s = math.sqrt(x.shape[-1])
    u = x / s
    r = math.sqrt(float(c.detach())) * u.norm(dim=-1, keepdim=True)
    return s * torch.tanh(r) / r * u


@pytest.mark.parametrize("geometry", ["ball", "euclidean"])
def test_linear_attention_layer_equals_quadratic_definition_with_value_gate(geometry):
    d, h, n = 8, 2, 21
    att = HyperbolicLinearAttention(d, h, causal=True, bias=False, c_init=0.5, c_bounds=(1e-4, 10.0), geometry=geometry)
    x = torch.randn(2, n, d) * 3
    gate = torch.sigmoid(torch.randn(2, n, d))
    q, k, v = att.in_proj(x).view(2, n, 3, d).unbind(2)
    v = v * gate
    heads = [t.view(2, n, h, d // h).transpose(1, 2) for t in (q, k, v)]
    if geometry == "ball":
        heads[:2] = [_ball(t, att.c()) for t in heads[:2]]
        assert (heads[0].norm(dim=-1) < math.sqrt(d // h / float(att.c()))).all()  # inside the ball
    o = causal_linear_attn_quadratic(*heads)
    torch.testing.assert_close(att(x, value_gate=gate), att.out_proj(o.transpose(1, 2).reshape(2, n, d)))
    assert (att.curvature is None) == (geometry == "euclidean")


@pytest.mark.parametrize("d_model", [64, 768, 2048])
def test_ball_curvature_changes_the_output_and_gets_a_gradient_at_every_width(d_model):
    """The failure of the tangent clip: at c = 0.01 it never fired below d ~1,444 (zero curvature grad)."""
    torch.manual_seed(0)
    with torch.no_grad():
        x = torch.nn.RMSNorm(d_model)(torch.randn(1, 9, d_model))  # |x| ~ sqrt(d), as the block feeds it
    outs = []
    for c_init in (0.5, 1.0):
        torch.manual_seed(1)
        att = HyperbolicLinearAttention(
            d_model, d_model // 64, causal=True, bias=False, c_init=c_init, c_bounds=(1e-4, 10.0)
        )
        out = att(x)
        out.square().sum().backward()
        assert float(att.curvature.grad.abs()) > 0
        outs.append(out.detach())
    assert (outs[0] - outs[1]).abs().max() > 1e-3 * outs[0].abs().max()


def test_exact_mode_is_causal_softmax_over_poincare_distance():
    d, h, n = 8, 2, 11
    att = HyperbolicLinearAttention(d, h, causal=True, bias=False, c_init=0.7, mode="exact", c_bounds=(1e-4, 10.0))
    _randomise(att, 0.2)
    x = torch.randn(2, n, d) * 3
    c, beta = att.c(), F.softplus(att.beta)
    q, k, v = att.in_proj(x).view(2, n, 3, h, d // h).unbind(2)  # the exact form maps q and k itself
    out = torch.zeros(2, n, h, d // h)
    for t in range(n):
        for j in range(h):
            score = -beta[j] * dist(exp0(q[:, t, None, j], c), exp0(k[:, : t + 1, j], c), c)[..., 0]  # (B, t+1)
            out[:, t, j] = (torch.softmax(score, -1)[..., None] * v[:, : t + 1, j]).sum(1)
    torch.testing.assert_close(att(x), att.out_proj(out.reshape(2, n, d)), rtol=1e-9, atol=1e-11)
    att.mode = "auto"
    att.auto_threshold = float(c.detach()) + 0.1
    assert not att.use_exact()
    att.auto_threshold = float(c.detach()) - 0.1
    assert att.use_exact()


def test_hyp_ssm_parallel_equals_tangent_loop():
    d, s, n = 6, 5, 23
    ssm = HyperbolicSSM(d, s, "parallel", 0.8, 1e-4, 10.0)
    _randomise(ssm, 0.2)
    x = torch.randn(2, n, d)
    dt, bx, cx = ssm.in_proj(x).split(s, -1)
    delta = F.softplus(dt)
    a = torch.exp(-delta * F.softplus(ssm.a_raw))
    c = ssm.curvature()
    p = exp0(ssm.point, c)
    h = torch.zeros(2, s)
    ys = []
    for t in range(n):
        h = a[:, t] * h + delta[:, t] * bx[:, t]
        ys.append(ssm.out(torch.sigmoid(cx[:, t]) * log0(mobius_add(exp0(h, c), p, c), c)))
    torch.testing.assert_close(ssm(x), torch.stack(ys, 1), rtol=1e-10, atol=1e-12)


def test_hyp_ssm_mobius_mode_tends_to_tangent_scan_as_curvature_vanishes():
    d, s, n = 6, 5, 15
    x = torch.randn(2, n, d)
    outs = {}
    for c in (1e-7, 1.0):
        for mode in ("parallel", "mobius"):
            torch.manual_seed(1)
            ssm = HyperbolicSSM(d, s, mode, c, 1e-8, 10.0)
            with torch.no_grad():
                ssm.in_proj.bias[:s] += 2.0  # larger steps so that states are O(1)
            outs[c, mode] = ssm(x)
    torch.testing.assert_close(outs[1e-7, "mobius"], outs[1e-7, "parallel"], rtol=1e-5, atol=1e-6)
    assert (outs[1.0, "mobius"] - outs[1.0, "parallel"]).abs().max() > 1e-3  # curved: a different recurrence


def test_bk_hyperbolic_gate_formula():
    g = BKHyperbolicGate(3)
    g_re, g_im = torch.randn(2, 4, 3), torch.rand(2, 4, 3)
    expected = torch.sigmoid(g.weight[:, 0] * g_re + g.weight[:, 1] * g_im + g.bias)
    torch.testing.assert_close(g(g_re, g_im), expected)


@pytest.mark.parametrize("vocab, d", [(300, 30), (256, 64), (7, 5)])
def test_htt_embedding_formula_and_tied_head(vocab, d):
    emb = HTTEmbedding(vocab, d, rank=4)
    v1, v2, d1, d2 = htt_shape(vocab, d)
    assert v1 == math.ceil(math.sqrt(vocab)) and v1 * v2 >= vocab and d1 == math.ceil(math.sqrt(d)) and d1 * d2 >= d
    ids = torch.arange(vocab).view(1, -1)
    e = emb(ids)[0]  # (V, d)
    for t in (0, 1, vocab // 2, vocab - 1):
        t1, t2 = divmod(t, v2)
        full = (
            sum(
                math.cos(float(emb.phase[r].detach())) * torch.outer(emb.core1[t1, r], emb.core2[t2, r])
                for r in range(4)
            )
            / 2
        )
        torch.testing.assert_close(e[t], full.flatten()[:d])
    torch.testing.assert_close(emb.table(), e)
    x = torch.randn(2, 3, d)
    torch.testing.assert_close(emb.tied_logits(x), x @ e.T)


def test_curvature_is_softplus_clamped():
    cv = Curvature((3,), 0.5, 0.1, 2.0)
    torch.testing.assert_close(cv(), torch.full((3,), 0.5, dtype=cv().dtype))
    with torch.no_grad():
        cv.raw.copy_(torch.tensor([-20.0, 0.0, 20.0]))
    torch.testing.assert_close(cv(), torch.tensor([0.1, math.log(2), 2.0], dtype=cv().dtype))


def test_cone_angle_geometry():
    x = torch.tensor([0.3, 0.1, 0.0])
    assert float(cone_angle(x, 1.5 * x)) < 1e-2  # further out along the ray: inside every cone
    assert float(cone_angle(x, 0.3 * x)) > math.pi - 1e-2  # towards the origin: opposite direction
    side = torch.tensor([0.3, 0.1, 0.2])
    assert 0.1 < float(cone_angle(x, side)) < math.pi - 0.1


def test_entailment_loss_counts_only_violations():
    ent = EntailmentCones(4, 3, 1.0, 1.0, 1e-4, 10.0)
    with torch.no_grad():
        ent.proj.weight.copy_(torch.eye(3, 4))
    ray = torch.tensor([0.2, 0.1, 0.05, 0.0])
    along = torch.stack([ray * (1 + 0.5 * t) for t in range(6)])[None]  # each token further out on one ray
    assert float(ent(along).detach()) == 0.0
    back = along.flip(1)  # each token closer to the origin: angle ~ pi > aperture
    assert float(ent(back).detach()) == pytest.approx(math.pi - float(ent.aperture().detach()), abs=2e-2)


def test_mst_edges_of_points_on_a_line():
    pts = torch.tensor([0.0, 0.3, 1.0, 3.0, 3.5]).view(1, -1, 1)
    d = (pts - pts.transpose(1, 2)).abs().squeeze(-1)
    child, par = _mst_edges(d)
    assert float(d[0, child[0], par[0]].sum()) == pytest.approx(3.5)  # a path on the line: max - min


def _normalised_persistence_by_hand(u, c):
    rms = u.pow(2).sum(-1).mean(-1).sqrt()
    x = exp0(u / rms[:, None, None], c)
    d = dist(x[:, :, None], x[:, None], c)[..., 0]  # (B, M, M)
    child, par = _mst_edges(d)
    m = u.shape[1]
    off = ~torch.eye(m, dtype=torch.bool)
    return torch.stack([d[b, child[b], par[b]].mean() / d[b][off].mean() for b in range(u.shape[0])])


def test_homology_regulariser_is_normalised_mst_length():
    ph = PersistentHomology(6, 3, 8, 0.5, 1.0, 1e-4, 10.0)
    h = torch.randn(2, 30, 6)
    loss = ph(h)
    idx = torch.linspace(0, 29, 8).round().long()
    expected = _normalised_persistence_by_hand(ph.proj(h[:, idx]), ph.curvature())
    torch.testing.assert_close(loss, 0.5 * expected.mean(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ph.persistence, expected.detach())
    assert not ph.persistence.requires_grad


def test_homology_regulariser_is_scale_invariant():
    """Shrinking the projection cannot lower the term (it could when it was a mean MST length)."""
    ph = PersistentHomology(6, 3, 8, 0.5, 1.0, 1e-4, 10.0)
    h = torch.randn(2, 30, 6)
    base = ph(h).detach()
    for scale, exact in ((0.25, True), (4.0, True), (1e-3, False), (37.0, False)):
        with torch.no_grad():
            ph.proj.weight.mul_(scale)
        scaled = ph(h).detach()
        with torch.no_grad():
            ph.proj.weight.div_(scale)
        if exact:  # a power of two scales every float exactly
            assert torch.equal(scaled, base), scale
        else:
            torch.testing.assert_close(scaled, base, rtol=1e-10, atol=0.0)


@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_normalised_persistence_separates_clustered_from_uniform_points(c):
    g = torch.Generator().manual_seed(0)
    uniform = torch.randn(8, 64, 16, generator=g)
    centres = torch.randn(8, 4, 16, generator=g)
    clustered = centres.repeat_interleave(16, dim=1) + 0.05 * torch.randn(8, 64, 16, generator=g)
    p_uniform = normalised_persistence(uniform, torch.tensor(c))
    p_clustered = normalised_persistence(clustered, torch.tensor(c))
    assert p_clustered.max() < p_uniform.min(), (p_clustered, p_uniform)


def test_normalised_persistence_gradient_tightens_clusters():
    """A descent step lowers the term by pulling each point towards its own cluster, relative to the
    distance between the clusters."""
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    labels = torch.arange(16) % 2
    u = (centres[labels] + 0.3 * torch.randn(16, 4, generator=g))[None].requires_grad_()
    c = torch.tensor(1.0)

    def spread(pts):  # mean distance to the own centroid / distance between the centroids
        means = torch.stack([pts[0, labels == j].mean(0) for j in (0, 1)])
        return float((pts[0] - means[labels]).norm(dim=-1).mean() / (means[0] - means[1]).norm())

    value = normalised_persistence(u, c).sum()
    (grad,) = torch.autograd.grad(value, u)
    stepped = (u - 0.02 * grad).detach()
    assert float(normalised_persistence(stepped, c)) < float(value)
    assert spread(stepped) < spread(u.detach())


def test_sheaf_attention_consensus():
    sh = SheafAttention(8, 4, 3)
    with torch.no_grad():
        sh.restriction.copy_(torch.randn(1, 2, 3).expand(4, 2, 3))  # identical restriction maps
    same = torch.randn(1, 2, 1, 2).expand(1, 2, 4, 2).reshape(1, 2, 8)  # identical head stalks
    z = same.view(1, 2, 4, 2)[:, :, 0] @ sh.restriction[0]  # (1, 2, 3)
    torch.testing.assert_close(sh(same), sh.out(z))  # agreement everywhere: the consensus is the common value
    x = same.clone()
    x[..., :2] += 5.0  # head 0 disagrees with the others
    zs = torch.einsum("bnhi,hij->bnhj", x.view(1, 2, 4, 2), sh.restriction)
    dis = torch.cdist(zs, zs) ** 2 / 3
    w = torch.softmax(-dis.mean(-1), -1)
    torch.testing.assert_close(sh(x), sh.out((w[..., None] * zs).sum(-2)))
    assert (w[..., 0] < w[..., 1]).all()


def test_an_fp32_value_gate_keeps_linear_attention_in_the_autocast_dtype(monkeypatch):
    """Under bf16 autocast the values stay bf16 after an fp32 gate (an fp32 v sent the GPU kernel down
    its slow fp32 path in phase8)."""
    import kernels.linear_attn as la

    seen = []
    real = la.causal_linear_attn
    monkeypatch.setattr(
        la, "causal_linear_attn", lambda q, k, v, **kw: seen.append((q.dtype, v.dtype)) or real(q, k, v, **kw)
    )
    layer = HyperbolicLinearAttention(32, 4, causal=True).float()
    x = torch.randn(2, 9, 32, dtype=torch.float32)
    gate = torch.rand(2, 9, 32, dtype=torch.float32)  # as the BK-hyperbolic gate gives it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x, value_gate=gate)
    assert seen == [(torch.bfloat16, torch.bfloat16)]


def test_channel_scale_is_the_per_channel_gate_expanded_over_its_dims():
    g = torch.rand(2, 5, 4, dtype=torch.float64)
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    expanded = g.repeat_interleave(3, dim=-1)  # channel j covers dims [3j, 3j + 3)
    torch.testing.assert_close(channel_scale(g, x), x * expanded, rtol=0, atol=0)
    grad = torch.autograd.grad(channel_scale(g.requires_grad_(), x).sum(), g)[0]
    torch.testing.assert_close(grad, x.view(2, 5, 4, 3).sum(-1))  # each channel collects its own dims


def test_rotary_tables_are_built_once_per_shape_and_serve_autograd_after_inference_mode():
    from models.layers.attention import rotary, rotary_tables

    rotary_tables.cache_clear()
    x = torch.randn(2, 3, 11, 8)
    with torch.inference_mode():
        rotary(x)  # the first table is built here
    xr = x.clone().requires_grad_()
    out = rotary(xr)
    out.sum().backward()  # an inference-mode table could not be saved for backward
    assert rotary_tables.cache_info().hits >= 1 and rotary_tables.cache_info().misses == 1
    angles = torch.arange(11.0)[:, None] * 10000.0 ** (-torch.arange(0, 8, 2) / 8)  # (N, Dh/2)
    want = torch.stack(
        (
            x[..., 0::2] * angles.cos() - x[..., 1::2] * angles.sin(),
            x[..., 0::2] * angles.sin() + x[..., 1::2] * angles.cos(),
        ),
        dim=-1,
    ).flatten(-2)
    torch.testing.assert_close(out, want)
