"""bench/host_ops.py on CPU (Triton interpreted): the glue around the kernels, counted. The backward of BK-Core
and of window attention runs one torch op beside its Triton launches (the reduction of the parameter
gradients' partial sums), and the window backward materialises no zero gradients for its non-differentiable
outputs; views, allocations and a `to` that changes nothing are not counted, an in-place op and a copy are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from interpreted import interpreted_env

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.host_ops import does_work, launches_through  # noqa: E402


def test_the_backward_glue_is_one_reduction(tmp_path):
    out = tmp_path / "host-ops.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "host_ops.py"), "--ops", "bk_core,window_attn", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=interpreted_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sitecustomize" not in proc.stderr  # the shortcuts were installed
    report = json.loads(out.read_text())
    assert report["environment"]["command"].endswith("--ops bk_core,window_attn --out " + str(out))
    rows = {(r["op"], r["impl"]): r for r in report["rows"]}
    assert set(rows) == {("bk_core", "triton"), ("bk_core", "triton_lookback"), ("window_attn", "triton")}
    bk, window = rows["bk_core", "triton"], rows["window_attn", "triton"]
    # each way the halo kernel (its flags zeroed first), then the two-pass kernels gated: segments, carries, sweep
    assert bk["forward"] == {"triton_launches": 4, "torch_ops": 1, "ops": {"zeros": 1}}
    assert bk["backward"] == {"triton_launches": 4, "torch_ops": 2, "ops": {"sum": 1, "zeros": 1}}
    assert rows["bk_core", "triton_lookback"]["backward"]["ops"] == {"sum": 1, "zeros": 1}  # its tickets
    assert window["backward"] == {"triton_launches": 2, "torch_ops": 1, "ops": {"sum": 1}}  # dq (and delta), dk/dv
    assert window["forward"]["triton_launches"] == 1  # the attention maps q and k itself
    assert "window_attn" in proc.stdout and "bk_core" in proc.stdout


def test_views_allocations_and_unchanged_casts_do_no_work():
    x = torch.randn(4, 3)
    assert not does_work("view", (x,), x.view(12))
    assert not does_work("empty_like", (x,), torch.empty_like(x))
    assert not does_work("to", (x,), x.to(torch.float32))  # the same tensor back
    assert not does_work("promote_types", (torch.float32, torch.float16), torch.float32)
    assert does_work("to", (x,), x.to(torch.float64))
    assert does_work("clone", (x,), x.clone())
    assert does_work("zero_", (x,), x.zero_())  # in place: the output is its input, and it wrote it


def test_every_launch_is_counted_with_direct_launches_off():
    """kernels.launch skips `kernel[grid]` on a GPU after a specialisation's first launch; counting turns that off."""
    from kernels import launch as kernel_launch

    before = kernel_launch.DIRECT
    with launches_through(lambda launch, *args, **kwargs: launch(*args, **kwargs)):
        assert kernel_launch.DIRECT is False
    assert kernel_launch.DIRECT is before
