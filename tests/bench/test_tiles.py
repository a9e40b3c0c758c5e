"""bench/tiles.py's choices under the Triton interpreter (CPU, tiny shapes): each kind's first and last choice
runs through its launcher and leaves the launcher's own configuration as it found it. (The timing replays
CUDA graphs: GPU only.)"""

import os
import subprocess
import sys
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from bench import tiles  # noqa: E402
from kernels.bk_core import lookback as lb  # noqa: E402
from kernels.linear_attn import triton as la  # noqa: E402
from kernels.window_attn import triton as wt  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def ends_of_each_kind(choices):
    by_kind: dict = {}
    for kind, choice, fn in choices:
        by_kind.setdefault(kind, []).append((choice, fn))
    return {kind: [items[0], items[-1]] for kind, items in by_kind.items()}


@pytest.mark.parametrize("op", sorted(tiles.CHOICES))
def test_each_kinds_choices_launch_and_restore_the_launcher(op):
    launchers = ("_fwd_launch", "_split_tiles", "_dkdv_launch", "_dq_launch")

    def settings():
        return [getattr(wt, name) for name in launchers] + [
            la._chunked_cfg,
            *(lb.SEG_FWD, lb.SEG_BWD, lb.LOOK, lb.BLOCK_C),
        ]

    defaults = settings()
    ends = ends_of_each_kind(tiles.CHOICES[op](33, "cpu", B=1, H=2))
    assert set(ends) == set(tiles.KINDS[op])
    # attention: the forward's (o, lse), the backwards' gradients, dq or dx first: (B, H, N, D); BK-Core: g or
    # dv first, (B, N, 32 H)
    lead = (1, 33, 64) if op == "bk_core" else (1, 2, 33)
    for kind, items in ends.items():
        for choice, fn in items:
            out = fn()
            assert out[0].shape[:3] == lead, (kind, choice)
    assert settings() == defaults


def test_window_choices_run_at_head_dim_128():
    ends = ends_of_each_kind(tiles.window_choices(21, "cpu", B=1, H=1, D=128))
    assert set(ends) == set(tiles.KINDS["window_attn"])
    for kind, items in ends.items():
        for choice, fn in items:
            assert fn()[0].shape == (1, 1, 21, 128), (kind, choice)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--op", "window_attn", "--head-dim", "256"], "--head-dim: 256 is outside 16 to 128"),
        (["--op", "bk_core", "--head-dim", "128"], "--head-dim: only window_attn takes a head dim, not bk_core"),
    ],
)
def test_a_bad_head_dim_is_refused_before_anything_runs(tmp_path, args, message):
    out = tmp_path / "tiles"
    cmd = [sys.executable, str(REPO / "bench" / "tiles.py"), *args, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith(message)
    assert not out.with_suffix(".json").exists()


def test_an_unknown_kind_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "tiles"
    cmd = [sys.executable, str(REPO / "bench" / "tiles.py"), "--op", "linear_attn", "--kinds", "chunk,fwd"]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "--kinds: fwd not a kind of linear_attn (one of chunk, _la_bwd_states_kernel, _la_bwd_chunk_kernel, "
            "_la_bwd_chunk_dv_kernel)"
        )
    )
    assert not out.with_suffix(".json").exists()
