"""bench/kernels.py on CPU: end to end (Triton interpreted, quick sizes), every op measured (scan in a child
process) and the JSON complete; a case's implementations timed in interleaved repetitions, the median one
kept; --skip-anchors by words; the window_attn case's flex_attention anchors against the references."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from interpreted import interpreted_env

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_measures_every_op_against_its_reference(tmp_path):
    out = tmp_path / "kernels.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "kernels.py"),
            "--device",
            "cpu",
            "--quick",
            "--sizes",
            "33",
            "--isolate",
            "scan",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=interpreted_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sitecustomize" not in proc.stderr  # the shortcuts were installed
    result = json.loads(out.read_text())
    ops = {"scan", "bk_core", "linear_attn", "poincare_exp0", "poincare_log0", "poincare_mobius_add", "window_attn"}
    assert {row["op"] for row in result["rows"]} == ops and result["not_run"] == []
    env = result["environment"]
    assert result["copy_bandwidth_Bps"] > 0 and env["torch"] and env["device"] == "cpu" and "git_commit" in env
    assert "bench/kernels.py --device cpu --quick" in env["command"]
    for row in result["rows"]:
        assert "error" not in row and row["shape"]["N"] == 33
        for impl in ("triton", "torch_ref") + (("triton_sequential_bwd",) if row["op"] == "linear_attn" else ()):
            for kind, nbytes in (("fwd", row["bytes_fwd"]), ("fwd_bwd", row["bytes_fwd_bwd"])):
                timing = row["impls"][impl][kind]
                assert timing["q20_ms"] <= timing["median_ms"] <= timing["q80_ms"], (row["op"], impl, kind)
                assert timing["repeats_ms"] == [timing["median_ms"]]
                assert abs(timing["GBps"] * 1e9 * timing["median_ms"] * 1e-3 - nbytes) <= 1e-6 * nbytes
        assert row["speedup_vs_ref_fwd"] > 0 and row["speedup_vs_ref_fwd_bwd"] > 0
    isolated = {row["op"] for row in result["rows"] if "child_copy_bandwidth_Bps" in row}
    assert isolated == {"scan"}
    assert "bk_core" in proc.stdout and f"wrote {out}" in proc.stdout


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_anchors_are_our_sliding_window_and_score():
    """The window_attn case's flex_attention anchors (uncompiled; the case compiles these functions): the
    dot-product one is a masked softmax over the keys s in (t - window, t] with our per-head scale, the
    score_mod one is window_hyp_attn_ref."""
    import torch

    from bench import kernels as bench_kernels
    from kernels.window_attn import window_hyp_attn_ref

    torch.manual_seed(0)
    B, H, N, D, window = 1, 2, 40, 16, 8
    q, k = (torch.randn(B, H, N, D) * 0.7 / D**0.5 for _ in range(2))
    v = torch.randn(B, H, N, D)
    c, s = torch.rand(H) + 0.2, torch.rand(H) + 0.5
    anchors = bench_kernels.window_flex_anchors(q, k, v, c, s, window, compile=False)
    assert set(anchors) == {bench_kernels.FLEX_DOT, bench_kernels.FLEX_HYP}

    t = torch.arange(N)
    in_window = (t.view(1, N) <= t.view(N, 1)) & (t.view(N, 1) - t.view(1, N) < window)
    assert in_window.sum(-1).tolist() == [min(i + 1, window) for i in range(N)]
    score = (s.view(1, H, 1, 1) * q @ k.transpose(-1, -2)).masked_fill(~in_window, float("-inf"))
    expected = torch.softmax(score, dim=-1) @ v
    torch.testing.assert_close(anchors[bench_kernels.FLEX_DOT][0](), expected, rtol=1e-5, atol=1e-5)
    expected = window_hyp_attn_ref(q, k, v, c, s, window)
    torch.testing.assert_close(anchors[bench_kernels.FLEX_HYP][0](), expected, rtol=1e-5, atol=1e-5)


def test_implementations_are_timed_in_interleaved_repetitions_and_the_median_one_kept(monkeypatch):
    from bench import kernels as bench_kernels

    calls = []
    x = torch.ones(4, requires_grad=True)

    def impl(name):
        def fn():
            calls.append(name)
            return x * 2

        return fn

    def case(n, device, dtype, quick):
        return {"N": n}, {"triton": impl("a"), "torch_ref": impl("b")}, {}, (x,), 16, 32

    monkeypatch.setitem(bench_kernels.CASES, "fake", case)
    monkeypatch.setitem(bench_kernels.DTYPES, "fake", torch.float32)
    row = bench_kernels.run_case("fake", 8, "cpu", True, bw=1e9, triton_ok=True, repeats=3)
    # per repetition and implementation: fwd (a warm-up and 3 timed calls), fwd+bwd (one call that draws the
    # cotangents, a warm-up and 3 timed)
    assert calls == (["a"] * 9 + ["b"] * 9) * 3
    for name in ("triton", "torch_ref"):
        for kind in ("fwd", "fwd_bwd"):
            timing = row["impls"][name][kind]
            assert len(timing["repeats_ms"]) == 3 and timing["median_ms"] == sorted(timing["repeats_ms"])[1]


def test_skip_anchors_takes_words_found_in_anchor_names(monkeypatch):
    from bench import kernels as bench_kernels

    monkeypatch.setattr(bench_kernels, "SKIP_ANCHORS", frozenset(["score_mod"]))
    assert "," in bench_kernels.FLEX_HYP  # a comma-separated list could not name it whole
    assert bench_kernels.skipped(bench_kernels.FLEX_HYP) and not bench_kernels.skipped(bench_kernels.FLEX_DOT)


def test_repeats_below_one_are_refused_before_anything_runs(tmp_path):
    out = tmp_path / "kernels.json"
    cmd = [sys.executable, str(REPO / "bench" / "kernels.py"), "--device", "cpu", "--quick", "--repeats", "0"]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("--repeats: must be at least 1 (got 0)")
    assert not out.exists()


def test_a_failed_child_case_names_the_implementation_it_was_running():
    from bench import kernels as bench_kernels

    script = (
        "import sys\n"
        "print('[   1.0 s] scan N=1024: inputs and anchors', file=sys.stderr)\n"
        "print('[   2.0 s] scan N=1024: triton (repetition 1 of 3)', file=sys.stderr)\n"
        "print('[W1205 03:04:11.5 CUDAEvent.h:93] Warning: CUDA warning: an illegal memory access', file=sys.stderr)\n"
        "sys.exit('RuntimeError: an illegal memory access was encountered')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    message = bench_kernels._child_failure(proc)
    assert message.startswith("child exited 1 during 'scan N=1024: triton (repetition 1 of 3)': ")
    assert message.endswith("an illegal memory access was encountered")
