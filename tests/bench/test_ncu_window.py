"""bench/ncu_window.py on CPU: bad arguments and a missing GPU are refused before anything runs (exit 2, the
reason on stderr); its step runs one forward and backward. Profiling itself needs CUDA and ncu."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import ncu_window

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args, says",
    [(["0"], "n: 0 is not a sequence length"), (["x"], "invalid int value"), ([], "needs a CUDA device")],
)
def test_it_refuses_what_it_cannot_profile(args, says):
    if not args and torch.cuda.is_available():
        pytest.skip("a CUDA device is present: nothing to refuse")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ncu_window.py"), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert says in proc.stderr.strip().splitlines()[-1]
    assert proc.stdout == ""


def test_a_step_runs_the_forward_and_the_backward():
    w = torch.randn(3, requires_grad=True)
    ncu_window.step(lambda: w * 2)
    torch.testing.assert_close(w.grad, torch.full((3,), 2.0))
