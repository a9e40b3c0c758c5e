"""Quickstart-sized phase7 / phase8 (d_model 64, 2 layers, vocab 256, seq 64) build and train a step fast."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from model_helpers import TINY  # noqa: F401  (registers the models)
from torch.utils.checkpoint import checkpoint

from models.registry import get


@pytest.mark.parametrize("name", ["phase7", "phase8"])
@pytest.mark.parametrize("ckpt", [False, True])
def test_quickstart_config_forward_backward_under_a_second(name, ckpt):
    entry = get(name)
    config = entry.make_config(dict(vocab_size=256, d_model=64, n_layers=2, n_heads=4, grad_checkpoint=ckpt))
    ids = torch.randint(0, 256, (2, 65))
    if ckpt:  # torch.utils.checkpoint's first call in a process costs ~1 s of one-time setup: pay it first
        lin = torch.nn.Linear(2, 2)
        checkpoint(lin, torch.ones(1, 2, requires_grad=True), use_reentrant=False).sum().backward()
    cpu = time.process_time()
    model = entry.build(config)
    model.train()
    logits = model(ids[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, 256), ids[:, 1:].reshape(-1))
    loss.backward()
    cpu = time.process_time() - cpu
    assert logits.shape == (2, 64, 256) and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    print(f"{name} ckpt={ckpt}: build + forward + backward {cpu:.3f} s CPU")
    assert cpu < 1.0


@pytest.mark.parametrize("name", ["phase7", "phase8"])
def test_any_sequence_length(name):
    entry = get(name)
    model = entry.build(entry.make_config(dict(vocab_size=256, d_model=32, n_layers=1, n_heads=2, window=4)))
    model.eval()
    with torch.no_grad():
        for n in (1, 2, 3, 5, 64, 65, 129):
            assert model(torch.randint(0, 256, (1, n))).shape == (1, n, 256)
