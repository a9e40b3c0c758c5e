"""bench/kernels.py end to end on CPU (Triton interpreted, quick sizes): every op measured (scan in a child
process), JSON complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"TRITON_INTERPRET": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    ops = {"scan", "bk_core", "linear_attn", "poincare_exp0", "poincare_log0", "poincare_mobius_add", "window_attn"}
    assert {row["op"] for row in result["rows"]} == ops and result["not_run"] == []
    env = result["environment"]
    assert result["copy_bandwidth_Bps"] > 0 and env["torch"] and env["device"] == "cpu" and "git_commit" in env
    assert "bench/kernels.py --device cpu --quick" in env["command"]
    for row in result["rows"]:
        assert "error" not in row and row["shape"]["N"] == 33
        for impl in ("triton", "torch_ref") + (("triton_chunked_bwd",) if row["op"] == "linear_attn" else ()):
            for kind, nbytes in (("fwd", row["bytes_fwd"]), ("fwd_bwd", row["bytes_fwd_bwd"])):
                timing = row["impls"][impl][kind]
                assert timing["q20_ms"] <= timing["median_ms"] <= timing["q80_ms"], (row["op"], impl, kind)
                assert abs(timing["GBps"] * 1e9 * timing["median_ms"] * 1e-3 - nbytes) <= 1e-6 * nbytes
        assert row["speedup_vs_ref_fwd"] > 0 and row["speedup_vs_ref_fwd_bwd"] > 0
    isolated = {row["op"] for row in result["rows"] if "child_copy_bandwidth_Bps" in row}
    assert isolated == {"scan"}
    assert "bk_core" in proc.stdout and f"wrote {out}" in proc.stdout
