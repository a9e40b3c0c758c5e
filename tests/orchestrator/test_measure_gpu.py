"""The benchmark job on a real GPU (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from orchestrator.measure import run_benchmark
from orchestrator.spec import resolve_config

pytestmark = pytest.mark.gpu
TINY = {"vocab_size": 1000, "d_model": 256, "n_layers": 2, "n_heads": 4, "device": "cuda", "seq_len": 128, "steps": 3}


@pytest.mark.parametrize("mode", ["inference", "train_no_optim", "train"])
def test_protocol_fields_on_cuda(mode):
    config, params = resolve_config(TINY | {"model": "phase7-seed", "mode": mode, "precision": "pure_bf16"})
    r = run_benchmark(config)
    assert r["status"] == "ok", r["error"]
    # bf16 storage; the caching allocator rounds each tensor up to 512 bytes
    assert r["params"] == params and 2 * params <= r["weights_bytes"] <= 2 * params + 512 * 64
    assert r["peak_bytes"] >= r["static_bytes"] >= r["weights_bytes"] and r["activation_bytes"] > 0
    if mode == "train":  # AdamW's two moments, same dtype as the weights (+ step counters)
        assert 3 * r["weights_bytes"] <= r["static_bytes"] <= 3 * r["weights_bytes"] + 512 * 256
    else:
        assert r["static_bytes"] == r["weights_bytes"]
    assert r["logits_bytes"] == 128 * 1000 * 2 and r["reserved_bytes"] >= r["peak_bytes"]
    assert r["tokens_per_s"] > 0 and r["mfu"] is not None and 0 < r["mfu"] < 1
    assert (r["saved_tensor_bytes"] > 0) == (mode != "inference")


def test_vram_budget_gives_a_real_oom():
    config, _ = resolve_config(
        TINY
        | {
            "model": "transformer",
            "d_model": 2048,
            "n_layers": 8,
            "n_heads": 16,
            "mode": "train",
            "vram_budget_gb": 0.25,
        }
    )
    r = run_benchmark(config)
    assert r["status"] == "oom" and r["stage"] in ("build", "forward", "backward", "step")
    assert torch.cuda.is_available()
