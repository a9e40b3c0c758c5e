"""Training-time properties of phase7 / phase8: gradients everywhere, live flags, checkpointing, AMP, memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import ALL_ON, build, saved_bytes, transfer

from models.phase8 import COMPONENTS


def _loss(model, ids):
    logits = model(ids)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    return loss + model.aux_loss if model.aux_loss is not None else loss


def _ids(n=48, b=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, n), generator=g)


def _dead_parameters(model, ids) -> list[str]:
    """Names of the learnable parameters whose gradient is missing or all zero after one backward."""
    model.train()
    _loss(model, ids).backward()
    return [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


FAMILIES = [
    ("transformer", {}),
    ("phase7-seed", {}),
    ("phase8-seed", {}),
    ("phase7", {}),
    ("phase8", ALL_ON),
    ("phase8", dict(lin_attn_geometry="euclidean")),
]


@pytest.mark.parametrize("d_model", [64, 768, 2048])
@pytest.mark.parametrize("name, knobs", FAMILIES)
def test_every_parameter_gets_a_gradient_at_default_init(name, knobs, d_model):
    """Default initialisation (curvatures included) at the widths the models use: no enabled component
    may sit idle (the tangent clip it replaced gave phase8's curvature an all-zero gradient below d ~1,444)."""
    model, _ = build(name, d_model=d_model, n_heads=max(1, d_model // 64), n_layers=1 if d_model > 64 else 2, **knobs)
    ids = _ids()
    assert not _dead_parameters(model, ids)
    finite = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not finite, finite


@pytest.mark.parametrize(
    "name, knobs",
    [
        ("phase7", dict(window=8, embedding="htt", tie_head=True, ar_decay="none", ffn_rank_ratio=0.25)),
        ("phase8", dict(window=8, lin_attn_mode="exact", hyp_ssm_mode="mobius", embedding="htt")),
        ("phase8", dict(window=8, lin_attn_mode="auto", lin_attn_auto_threshold=0.001)),
    ],
)
def test_every_parameter_gets_a_gradient_in_every_variant(name, knobs):
    model, _ = build(name, **knobs)
    assert not _dead_parameters(model, _ids())


def test_auto_mode_below_its_threshold_idles_only_the_exact_forms_beta():
    model, _ = build("phase8", window=8, lin_attn_mode="auto", lin_attn_auto_threshold=5.0)
    assert _dead_parameters(model, _ids()) == [f"blocks.{i}.lin_attn.beta" for i in range(2)]


def test_linear_attention_curvature_still_acts_after_training():
    """After 30 AdamW steps on random data the curvature has moved, still gets a gradient, and changing it
    changes the logits."""
    model, _ = build("phase8", d_model=64, n_heads=1, n_layers=1)
    att = model.blocks[0].lin_attn
    c0 = float(att.c().detach())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(30):
        opt.zero_grad()
        _loss(model, _ids(seed=step)).backward()
        opt.step()
    assert abs(float(att.c().detach()) - c0) > 1e-3
    assert "blocks.0.lin_attn.curvature" not in _dead_parameters(model, _ids(seed=99))
    model.eval()
    with torch.no_grad():
        before = model(_ids(seed=100))
        att.curvature.add_(0.5)
        after = model(_ids(seed=100))
    assert (before - after).abs().max() > 1e-4


@pytest.mark.parametrize("flag", COMPONENTS)
def test_each_flag_changes_the_output(flag):
    """Full model vs the same weights with one component off: logits (or the loss, for aux-loss modules) move."""
    on = dict(window=8, **{c: True for c in COMPONENTS})
    off = dict(on, **{flag: False})
    if flag == "linear_attn":
        off["bk_hyperbolic"] = False
    model_on, _ = build("phase8", torch.float64, **on)
    model_off, _ = build("phase8", torch.float64, seed=7, **off)
    dropped = transfer(model_on, model_off)
    assert dropped and all(
        flag.split("_")[0][:3] in n or "bk_hyp" in n or "fusion" in n or "lin_attn" in n for n in dropped
    ), dropped
    model_on.eval(), model_off.eval()
    ids = _ids()
    with torch.no_grad():
        logits_on, logits_off = model_on(ids), model_off(ids)
        loss_on, loss_off = _loss(model_on, ids), _loss(model_off, ids)
    if flag in ("entailment", "homology"):
        assert torch.equal(logits_on, logits_off)  # auxiliary losses only
        assert model_on.aux_loss is not None and float(model_on.aux_loss) > 0
        assert float(loss_on - loss_off) != 0.0
    else:
        assert (logits_on - logits_off).abs().max() > 1e-6
        assert float(loss_on - loss_off) != 0.0


def test_phase8_with_everything_off_is_phase7():
    """No extension on: phase8 reduces to phase7 with the same weights (its mixers are shared code)."""
    p8, _ = build("phase8", torch.float64, window=8, **{c: False for c in COMPONENTS})
    p7, _ = build("phase7", torch.float64, seed=5, window=8)
    assert not transfer(p8, p7)
    ids = _ids()
    p7.eval(), p8.eval()
    with torch.no_grad():
        assert torch.equal(p7(ids), p8(ids))


@pytest.mark.parametrize("name, knobs", [("phase7", {}), ("phase8", ALL_ON)])
def test_gradient_checkpointing_same_gradients(name, knobs):
    ids = _ids(n=70)
    grads = []
    for ckpt in (False, True):
        model, _ = build(name, torch.float64, window=8, grad_checkpoint=ckpt, **knobs)
        model.train()
        _loss(model, ids).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-10, atol=1e-13, msg=n)


def _autocast_supported(dtype) -> bool:
    try:
        with torch.autocast("cpu", dtype=dtype):
            return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    except (RuntimeError, AssertionError):
        return False


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["phase7", "phase8"])
def test_finite_under_autocast_at_2048(name, amp):
    assert _autocast_supported(amp), f"CPU autocast does not support {amp} in this torch"
    model, _ = build(name, d_model=64, n_layers=2, n_heads=4, grad_checkpoint=True)
    model.train()
    ids = _ids(n=2048, b=1)
    with torch.autocast("cpu", dtype=amp):
        logits = model(ids)
        loss = _loss(model, ids)
    assert logits.dtype == amp  # autocast really ran the head in low precision
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name, knobs", [("phase7", {}), ("phase8", {}), ("phase8", ALL_ON)])
def test_saved_memory_grows_linearly(name, knobs):
    model, _ = build(name, d_model=32, n_layers=1, n_heads=2, **knobs)
    model.train()

    def measure(n):
        ids = _ids(n=n, b=1)

        def run(params):
            params.update(p.untyped_storage().data_ptr() for p in model.parameters())
            _loss(model, ids)

        return saved_bytes(run)

    b1, b2, b4 = measure(1024), measure(2048), measure(4096)
    r1, r2 = b2 / b1, b4 / b2
    print(f"{name} {knobs}: saved bytes {b1} / {b2} / {b4}, ratios {r1:.3f} {r2:.3f}")
    assert 1.85 <= r1 <= 2.15 and 1.85 <= r2 <= 2.15, (b1, b2, b4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["phase7", "phase8"])
def test_pure_low_precision_weights_train(name, dtype):
    """pure_bf16 / pure_fp16: weights and activations in half precision; the ops accumulate in float32."""
    model, _ = build(name, dtype, d_model=64, n_layers=2, n_heads=4, **(ALL_ON if name == "phase8" else {}))
    model.train()
    ids = _ids(n=512, b=1)
    logits = model(ids)
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    _loss(model, ids).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
