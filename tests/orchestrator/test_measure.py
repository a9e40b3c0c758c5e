"""The benchmark job's precision bookkeeping, on CPU (the CUDA protocol is tests/orchestrator/test_measure_gpu.py)."""

from __future__ import annotations

import pytest
import torch

from orchestrator.measure import math_dtypes, run_benchmark
from orchestrator.spec import resolve_config

TINY = {"model": "transformer", "vocab_size": 64, "d_model": 16, "n_layers": 1, "n_heads": 2, "seq_len": 8}
TINY |= {"batch_size": 2, "device": "cpu", "steps": 1, "warmup_steps": 0, "mode": "inference"}


@pytest.mark.parametrize(
    "precision, dtypes, logits_itemsize",
    [
        ("fp32", (torch.float32,), 4),
        ("amp_bf16", (torch.float32, torch.bfloat16), 2),
        ("amp_fp16", (torch.float32, torch.float16), 2),
        ("pure_bf16", (torch.float32, torch.bfloat16), 2),
    ],
)
def test_a_precision_names_its_warm_up_dtypes_and_its_logits_size(precision, dtypes, logits_itemsize):
    """Protocol step 1 warms exactly `math_dtypes`; the stored logits bytes count the same 16-bit dtype."""
    assert math_dtypes(precision) == dtypes
    config, _ = resolve_config(TINY | {"precision": precision})
    result = run_benchmark(config)
    assert result["status"] == "ok", result["error"]
    assert result["logits_bytes"] == 2 * 8 * 64 * logits_itemsize
