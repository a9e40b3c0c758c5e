"""Every attention-kernel tile the dispatcher admits fits in an H200's shared memory, and the window
backward keeps its registers (no spill to local memory).

The kernels are compiled for sm_90 on this CPU machine (shared_memory_probe.py, in a process without
TRITON_INTERPRET) and the compiler's figure is checked against the hardware limit. The 8 GB study met
the limit on the H200: float32 linear attention at head dim 320 asked for 540,672 bytes (OutOfResources).
That figure is reproduced here; such heads now take the PyTorch reference.

The same compile, with the float scalars typed float64, is what `compile: true` asks of the kernels:
inductor passes Python floats to user Triton kernels as float64, and on the H200 the window kernel failed
("loop-carried variable m_i ... re-assigned to fp64") until the kernels cast them to float32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernels.backend import ATTENTION_MAX_HEAD_DIM

H200_SHARED_BYTES = 232448  # per block, as the H200's OutOfResources error states it
PROBE = Path(__file__).with_name("shared_memory_probe.py")


def probe(*args: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def needs():
    return probe(str(ATTENTION_MAX_HEAD_DIM)) + probe("--only", "_la_fwd_kernel:fp32", "320")


def test_admitted_head_dims_fit_in_shared_memory(needs):
    admitted = [n for n in needs if n["head_dim"] == ATTENTION_MAX_HEAD_DIM]
    assert len(admitted) == 16  # (5 linear attention + 3 window attention kernels) x 2 dtypes
    assert all(n["shared"] <= H200_SHARED_BYTES for n in admitted), admitted
    assert_window_backward_does_not_spill(admitted, head_dim=ATTENTION_MAX_HEAD_DIM)


def test_the_study_failure_is_reproduced_above_the_limit(needs):
    fwd = next(n for n in needs if n["head_dim"] == 320 and n["dtype"] == "fp32" and n["kernel"] == "_la_fwd_kernel")
    assert fwd["shared"] == 540672 > H200_SHARED_BYTES


def test_every_kernel_compiles_with_float64_scalars_as_torch_compile_passes_them():
    compiled = probe("--floats", "fp64", "--poincare", "64")
    assert {n["op"] for n in compiled} == {"linear_attn", "window_attn", "poincare"}
    assert len(compiled) == 24 and all(n["shared"] > 0 for n in compiled)  # 12 kernels x 2 dtypes
    assert_window_backward_does_not_spill(compiled, head_dim=64)


def assert_window_backward_does_not_spill(compiled: list[dict], head_dim: int) -> None:
    """The window backward at bf16, tiled as launched: at the forward's 64 x 64 tiles ptxas spilled 1,552
    (dk, dv) and 808 (dq) bytes per thread at head dim 64."""
    backward = [
        n
        for n in compiled
        if n["kernel"].startswith("_window_bwd") and n["dtype"] == "bf16" and n["head_dim"] == head_dim
    ]
    assert len(backward) == 2 and all(n["spill"] == 0 and 0 < n["registers"] <= 255 for n in backward), backward
