"""bench/profile_step.py on CPU: a tiny phase8 training step profiled, the table and JSON written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("profile_step", REPO / "bench" / "profile_step.py")
profile_step = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_step)

TINY = [
    "model=phase8",
    "d_model=32",
    "n_layers=1",
    "n_heads=2",
    "vocab_size=256",
    "seq_len=64",
    "batch_size=2",
    "device=cpu",
]


def test_profile_of_a_training_step_names_the_top_operators(tmp_path, capsys):
    out = tmp_path / "p-1.3b"  # a dot in the name is not a suffix
    profile_step.main(["--set", *TINY, "--steps", "2", "--warmup", "1", "--top", "5", "--out", str(out)])
    report = json.loads((tmp_path / "p-1.3b.json").read_text())
    rows = report["rows"]
    assert len(rows) == 5 and report["config"]["mode"] == "train" and report["steps"] == 2
    assert [r["ms_per_step"] for r in rows] == sorted((r["ms_per_step"] for r in rows), reverse=True)
    assert 0 < sum(r["share"] for r in rows) <= 1 + 1e-9
    assert sum(r["ms_per_step"] for r in rows) <= report["total_ms_per_step"] + 1e-6
    assert any(r["name"].startswith("aten::") for r in rows)
    assert report["wall_ms_per_step"] > 0 and report["kernels_per_step"] == 0  # no device kernels on CPU
    assert report["environment"]["torch"] and "git_commit" in report["environment"]
    table = (tmp_path / "p-1.3b.txt").read_text()
    assert rows[0]["name"][:40] in table
    assert table == capsys.readouterr().out  # what it printed is what it wrote


@pytest.mark.parametrize("bad, field", [(["d_model=0"], "d_model"), (["oops"], "--set")])
def test_a_bad_setting_is_a_usage_error_naming_the_field(bad, field, capsys):
    with pytest.raises(SystemExit) as info:
        profile_step.main(["--set", *TINY, *bad])
    assert info.value.code == 2 and field in capsys.readouterr().err
