"""The worked example of docs/custom-models.md end to end, as a user runs it: the gla batch from the CLI
and from the API (its rows exported and drawn by the dashboard), and a study over gla's own knobs, on real
local Ray workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orchestrator import api

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "custom_model"


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env)


def phasebench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return python("-m", "phasebench", *args, cwd=cwd)


def test_the_gla_batch_runs_from_the_cli_beside_the_built_in_families(tmp_path):
    db = f"sqlite:///{tmp_path / 'pb.db'}"
    proc = phasebench("run", str(EXAMPLE / "gla.yaml"), "--db", db, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = api.results(db=db)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}
    assert {r["model"] for r in rows} == {"gla", "transformer", "phase7"}
    assert all(r["tokens_per_s"] > 0 and r["params"] > 0 for r in rows)
    export = tmp_path / "rows.json"
    exported = phasebench("results", "export", "--db", db, "--format", "json", "--out", str(export), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert sorted(r["model"] for r in json.loads(export.read_text())) == sorted(r["model"] for r in rows)
    html = tmp_path / "report.html"
    built = phasebench(
        "dashboard", "build", "--from-export", str(export), "--out", str(html), "--plotlyjs", "plotly.js", cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr[-3000:]
    page = html.read_text()
    assert '"name":"gla peak"' in page and '"name":"phase7 peak"' in page  # a memory trace per family, gla's too
    assert 'data-model="gla"' in page  # and its rows in the table


def test_the_gla_family_runs_from_the_api_with_imports(tmp_path):
    spec = {
        "name": "api-gla",
        "defaults": {
            "device": "cpu",
            "vocab_size": 256,
            "d_model": 32,
            "n_heads": 2,
            "n_layers": 1,
            "seq_len": 40,
            "steps": 1,
            "mode": "train",
        },
        "grid": {"model": ["gla"]},
    }
    imports = [str(EXAMPLE / "gla.py")]
    script = f"from orchestrator import api; print(api.run({spec!r}, db='sqlite:///pb.db', imports={imports!r}).counts)"
    proc = python("-c", script, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("{'ok': 1}"), proc.stderr[-3000:]


def test_a_study_over_glas_knobs_stores_its_trials_like_a_built_in_familys(tmp_path):
    db = f"sqlite:///{tmp_path / 'pb.db'}"
    short = ["--set", "steps=4", "--set", "eval_every=4", "--set", "eval_tokens=1024"]
    created = phasebench("study", "create", str(EXAMPLE / "gla-study.yaml"), "--db", db, *short, cwd=tmp_path)
    assert created.returncode == 0, created.stderr[-3000:]
    ran = phasebench("study", "run", "gla-knobs", "--trials", "2", "--db", db, "--no-progress", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    rows = api.results(db=db)
    assert sorted(r["trial_number"] for r in rows) == [0, 1]
    assert {(r["model"], r["status"], r["study_name"]) for r in rows} == {("gla", "ok", "gla-knobs")}
    assert all(r["loss"] is not None and r["tokens_per_s"] > 0 for r in rows)
