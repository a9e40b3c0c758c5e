"""No host synchronisation in a training step: what a CUDA-graph capture refuses, caught on the CPU.

A dispatch mode records every op that makes the host wait for the device on CUDA (reading a value:
`.item()`, `bool()`, `torch.equal`; ops whose output size depends on values: boolean-mask indexing,
`nonzero`, `masked_select`, `unique`). Every family's forward, loss and backward, with every module on,
must call none of them (`execution: graph` captures exactly this step). The homology term's
boolean-mask mean was such a call, found on the H200.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import ALL_ON, build
from sync_spy import SyncSpy


def _step_calls(name, **knobs) -> list[str]:
    model, _ = build(name, d_model=32, n_heads=2, n_layers=1, **knobs)
    model.train()
    ids = torch.randint(0, 256, (2, 70), generator=torch.Generator().manual_seed(0))
    with SyncSpy() as spy:
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        if model.aux_loss is not None:
            loss = loss + model.aux_loss
        loss.backward()
    return spy.calls


@pytest.mark.parametrize(
    "name, knobs",
    [
        ("transformer", {}),
        ("phase7-seed", {}),
        ("phase8-seed", {}),
        ("phase7", dict(window=8)),
        ("phase7", dict(window=8, embedding="htt", tie_head=True, ar_decay="none")),
        ("phase8", dict(window=8, **ALL_ON)),
        ("phase8", dict(window=8, lin_attn_mode="exact", lin_attn_geometry="hyperbolic")),
        ("phase8", dict(window=8, grad_checkpoint=True)),
    ],
)
def test_a_training_step_never_waits_for_the_device(name, knobs):
    assert _step_calls(name, **knobs) == []


def test_the_spy_sees_a_host_read():
    """phase8's auto mode reads its curvature on the host (validation refuses it for graph)."""
    assert "aten._local_scalar_dense.default" in _step_calls("phase8", window=8, lin_attn_mode="auto")


def graph_holders(model) -> list[str]:
    """Module attributes that hold a tensor of an autograd graph (a kept loss keeps its step's graph alive)."""
    return [
        f"{name}.{attr}"
        for name, module in model.named_modules()
        for attr, value in vars(module).items()
        if torch.is_tensor(value) and value.grad_fn is not None
    ]


@pytest.mark.parametrize("grad_checkpoint", [False, True])
def test_no_module_keeps_a_finished_steps_graph(grad_checkpoint):
    """A kept graph keeps the gradient accumulators it was built with into the next step; a CUDA-graph
    capture after an eager warm-up then meets accumulators of another stream and fails (seen on the H200
    with phase8's entailment and homology losses)."""
    from orchestrator.measure import BenchmarkJob
    from orchestrator.spec import resolve_config

    config, _ = resolve_config(
        {
            "model": "phase8",
            "device": "cpu",
            "mode": "train",
            "d_model": 32,
            "n_heads": 2,
            "n_layers": 2,
            "vocab_size": 256,
            "seq_len": 70,
            "window": 8,
            "grad_checkpoint": grad_checkpoint,
            **ALL_ON,
        }
    )
    job = BenchmarkJob(config)
    model = job.build()
    model.train()
    ids = torch.randint(0, 256, (2, 70), generator=torch.Generator().manual_seed(0))
    job.step(model, ids, None)
    assert graph_holders(model) == []
