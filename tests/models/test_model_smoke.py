"""Quickstart-sized phase7 / phase8 (d_model 64, 2 layers, vocab 256, seq 64) build and train a step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import TINY  # noqa: F401  (registers the models)

from models.registry import get


@pytest.mark.parametrize("name", ["phase7", "phase8"])
def test_quickstart_config_trains_the_same_with_and_without_checkpointing(name):
    """Activation checkpointing recomputes the forward in backward: same loss, same gradients."""
    entry = get(name)
    ids = torch.randint(0, 256, (2, 65), generator=torch.Generator().manual_seed(0))
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        config = entry.make_config(dict(vocab_size=256, d_model=64, n_layers=2, n_heads=4, grad_checkpoint=ckpt))
        model = entry.build(config)
        model.train()
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1))
        loss.backward()
        assert logits.shape == (2, 64, 256) and torch.isfinite(loss)
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    (plain_loss, plain_grads), (ckpt_loss, ckpt_grads) = results
    assert all(g is not None for g in plain_grads)
    torch.testing.assert_close(ckpt_loss, plain_loss)
    for got, want in zip(ckpt_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["phase7", "phase8"])
def test_any_sequence_length(name):
    entry = get(name)
    model = entry.build(entry.make_config(dict(vocab_size=256, d_model=32, n_layers=1, n_heads=2, window=4)))
    model.eval()
    with torch.no_grad():
        for n in (1, 2, 3, 5, 64, 65, 129):
            assert model(torch.randint(0, 256, (1, n))).shape == (1, n, 256)
