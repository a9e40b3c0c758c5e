"""The benchmark job on a real GPU (skipped without CUDA)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orchestrator.measure import run_benchmark
from orchestrator.spec import resolve_config

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]
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


WARM_THEN_PRODUCTS = """
import sys, torch
import torch.nn.functional as F
from orchestrator.measure import math_dtypes, warm_up_math
dev = torch.device("cuda", 0)
warm_up_math(dev, math_dtypes(sys.argv[1]))
torch.cuda.synchronize()
after_warm_up = torch.cuda.memory_allocated(dev)
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    a = torch.randn(512, 384, device=dev, dtype=dtype)
    w = torch.randn(256, 384, device=dev, dtype=dtype)
    F.linear(a, w, torch.randn(256, device=dev, dtype=dtype)).sum().item()
    (a @ w.T).sum().item()
    torch.bmm(a[None], w.T[None]).sum().item()
    del a, w
torch.cuda.synchronize()
print(after_warm_up, torch.cuda.memory_allocated(dev))
"""


@pytest.mark.parametrize("precision", ["fp32", "amp_bf16", "pure_fp16"])
def test_warming_the_runs_dtypes_leaves_nothing_for_other_dtypes_to_allocate(precision):
    """Protocol step 1 warms only a run's own dtypes: products in every other dtype, in a fresh process
    (a fresh CUDA context, as each run has), then allocate nothing that stays, so the baseline is what warming
    all three would give."""
    out = subprocess.run(
        [sys.executable, "-c", WARM_THEN_PRODUCTS, precision], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    after_warm_up, after_products = map(int, out)
    assert after_warm_up > 0  # the workspaces are allocator memory, so the check can see them
    assert after_products == after_warm_up
