"""The `compile` run field: every block goes through torch.compile (inductor) and the training step
computes the same loss and gradients as the eager model: on CPU (PyTorch paths), and on a GPU with the
Triton kernels inside the compiled graph (inductor passes Python floats to them as fp64, which broke the
window kernel on the H200 until the kernels cast their scalars)."""

from __future__ import annotations

import pytest
import torch

from kernels.backend import backend
from orchestrator.measure import BenchmarkJob
from orchestrator.spec import resolve_config

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


N = 100  # BK-Core's Triton kernel splits a sequence into segments of >= 32: 4 here, so its carry kernel runs


def loss_and_grads(model_name: str, compile_blocks: bool, device: str):
    config, _ = resolve_config(
        dict(
            model=model_name,
            d_model=32,
            n_layers=2,
            n_heads=2,
            vocab_size=64,
            seq_len=N,
            device=device,
            mode="train",
            precision="fp32",
            execution="compile" if compile_blocks else "eager",
        )
    )
    job = BenchmarkJob(config)
    job.prepare_device()
    model = job.build()
    ids = torch.randint(0, 64, (2, N + 1), generator=torch.Generator().manual_seed(1)).to(device)
    loss = job.loss(model, ids[:, :-1], ids[:, 1:])
    loss.backward()
    return model, loss.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_name", ["transformer", "phase7-seed", "phase8-seed", "phase7", "phase8"])
def test_compiled_blocks_train_like_the_eager_ones(model_name, device):
    with backend("triton" if device == "cuda" else "torch"):
        eager, eager_loss, eager_grads = loss_and_grads(model_name, False, device)
        compiled, compiled_loss, compiled_grads = loss_and_grads(model_name, True, device)
    assert all(block._compiled_call_impl is not None for block in compiled.blocks)
    assert all(block._compiled_call_impl is None for block in eager.blocks)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(compiled_grads, eager_grads, strict=True):
        assert (got is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
