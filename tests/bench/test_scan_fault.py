"""bench/scan_fault.py on CPU (`--device cpu --quick`): every case runs in a child process, a failing child is
reported with its own error line and does not stop the others, and the JSON holds every case."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "scan_fault.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_each_case_runs_alone_and_a_failing_one_is_named(tmp_path):
    out = tmp_path / "fault"
    # no GPU: accelerated-scan is no anchor here, so its child fails; the reference's must not be affected
    proc = run(
        "--device", "cpu", "--quick", "--sizes", "67", "--impls", "accelerated_scan.triton,torch_ref", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    cases = json.loads((out.with_suffix(".json")).read_text())["cases"]
    assert [(c["impl"], c["mode"]) for c in cases] == [
        ("accelerated_scan.triton", "eager"),
        ("accelerated_scan.triton", "graph"),
        ("torch_ref", "eager"),
        ("torch_ref", "graph"),
    ]
    for case in cases[:2]:
        assert not case["ok"] and case["rc"] == 1
        assert case["error"] == "KeyError: 'accelerated_scan.triton'"
    assert all(c["ok"] for c in cases[2:]) and cases[3]["graph_ms"] > 0
    assert "N=67     accelerated_scan.triton  eager  KeyError" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ("--impls", "triton,nope"),
            "--impls: unknown ['nope']; choose from ['triton', 'triton_fixed', 'torch_ref', 'accelerated_scan.triton']",
        ),
        (("--sizes", "1024,x"), "--sizes: a comma list of positive integers (got '1024,x')"),
        (("--sizes", "0"), "--sizes: a comma list of positive integers (got '0')"),
    ],
)
def test_bad_input_exits_2_naming_the_field_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "fault"
    proc = run("--device", "cpu", *args, "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(message)
    assert not out.with_suffix(".json").exists()
