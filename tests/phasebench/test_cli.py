"""The `phasebench` command through its entry point: exit codes, output, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import TINY, phasebench, run_cli

from orchestrator import api


def write_spec(tmp_path: Path, data) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def test_entry_point_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path):
    spec = write_spec(tmp_path, {"name": "x", "defaults": TINY | {"n_heads": 3}, "grid": {"model": ["transformer"]}})
    result = phasebench("run", spec, "--db", f"sqlite:///{tmp_path}/pb.db", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: n_heads: must divide d_model=32 [config model=transformer] (got 3)"
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "pb.db").exists() and not (tmp_path / "phasebench.db").exists()


def test_entry_point_dry_run_json(tmp_path):
    spec = write_spec(
        tmp_path,
        {"name": "x", "defaults": TINY, "grid": {"model": ["transformer", "phase7-seed"], "seq_len": [16, 32]}},
    )
    result = phasebench("run", spec, "--dry-run", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [(r["model"], r["seq_len"]) for r in records] == [
        ("transformer", 16),
        ("transformer", 32),
        ("phase7-seed", 16),
        ("phase7-seed", 32),
    ]
    assert all(len(r["hash"]) == 16 and r["params"] > 0 for r in records)
    assert not (tmp_path / "phasebench.db").exists()


def test_dry_run_table_shows_the_fields_that_tell_configs_apart(tmp_path):
    # within each model the grid's kernels and window vary; steps is the same everywhere; the fields phase8
    # alone has (linear_attn, ...) and model_version (1 for phase7, 2 for phase8) go with the model column
    grid = {"model": ["phase7", "phase8"], "kernels": ["triton", "torch"], "window": [8, 16]}
    spec = write_spec(tmp_path, {"name": "x", "defaults": TINY, "grid": grid})
    code, out, err = run_cli("run", spec, "--dry-run", "--db", f"sqlite:///{tmp_path}/pb.db")
    assert code == 0, err
    header, _, *rows = out.splitlines()[1:]
    assert header.split()[-3:] == ["kernels", "window", "params"]
    assert not {"steps", "model_version", "linear_attn"} & set(header.split())
    seen = [row.split()[2:3] + row.split()[-3:-1] for row in rows]
    expected = [[m, k, w] for m in ("phase7", "phase8") for k in ("triton", "torch") for w in ("8", "16")]
    assert sorted(seen) == sorted(expected)
    assert not (tmp_path / "pb.db").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run"], "give either SPEC or --resume"),
        (["run", "missing.yaml"], "spec: file not found"),
        (["results", "list", "--where", "nokey"], "--where: expected FIELD OP VALUE"),
        (["results", "list", "--where", "dmodel=3"], "--where: unknown field 'dmodel'"),
        (["status", "nope"], "batch: no batch named or numbered 'nope'"),
        (["results", "show", "zzzz"], "run: 'zzzz' matches no run"),
        (["results", "curves", "zzzz"], "run: 'zzzz' matches no run"),
        (["run", "--resume", "7"], "batch: no batch named or numbered '7'"),
    ],
)
def test_bad_arguments_exit_2(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path}/pb.db"
    run_cli("db", "upgrade", "--db", db)
    code, out, err = run_cli(*args, "--db", db)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_click_usage_errors_exit_2(capsys):
    code, _, err = run_cli("results", "list", "--format", "xml")
    assert code == 2 and "xml" in err
    code, _, _ = run_cli("frobnicate")
    assert code == 2


def test_binary_and_bomb_specs(capsys, tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    code, _, err = run_cli("run", str(binary), "--db", f"sqlite:///{tmp_path}/pb.db")
    assert code == 2 and "not valid UTF-8" in err
    assert not (tmp_path / "pb.db").exists()


def test_db_upgrade_and_current(capsys, tmp_path):
    db = f"sqlite:///{tmp_path}/pb.db"
    code, out, _ = run_cli("db", "current", "--db", db)
    assert code == 0 and "current: (empty)" in out
    code, out, _ = run_cli("db", "upgrade", "--db", db)
    assert code == 0 and "at revision 0005" in out
    code, out, _ = run_cli("db", "current", "--db", db)
    assert "current: 0005" in out and "head: 0005" in out


def test_env_masks_password(capsys):
    url = "postgresql://alice:s3cret-pw@db.example:5432/pb"
    code, out, err = run_cli("env", "--json", "--db", url)
    assert code == 0 and "s3cret-pw" not in out + err
    info = json.loads(out)
    assert info["database"] == "postgresql://alice:***@db.example:5432/pb"
    assert "transformer" in info["models"] and info["torch"]


def test_connection_error_masks_password(capsys):
    url = "postgresql://alice:s3cret-pw@127.0.0.1:1/pb"
    code, out, err = run_cli("status", "--db", url)
    assert code == 2 and "s3cret-pw" not in out + err and "***" in err


def test_results_commands_after_a_run(capsys, tmp_path, local_ray):
    db = f"sqlite:///{tmp_path}/pb.db"
    spec = write_spec(tmp_path, {"name": "cli", "defaults": TINY, "grid": {"model": ["transformer", "phase8-seed"]}})
    code, out, err = run_cli("run", spec, "--db", db, "--no-progress")
    assert code == 0, err
    assert "batch 1: ok 2" in out and "transformer" in out and "phase8-seed" in out
    code, out, _ = run_cli("results", "list", "--db", db, "--model", "phase8-seed", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 1 and rows[0]["model"] == "phase8-seed" and rows[0]["tokens_per_s"] > 0
    code, out, _ = run_cli("results", "list", "--db", db, "--where", "seq_len=16", "--format", "csv")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].startswith("run_id,batch")
    code, out, _ = run_cli("results", "list", "--db", db, "--where", "seq_len=17")
    assert code == 0 and "transformer" not in out
    export = tmp_path / "out.json"
    code, _, _ = run_cli("results", "export", "--db", db, "--out", str(export))
    exported = json.loads(export.read_text())
    assert code == 0 and {r["config"]["model"] for r in exported} == {"transformer", "phase8-seed"}
    code, out, _ = run_cli("results", "show", exported[0]["run_id"][:8], "--db", db, "--json")
    assert code == 0 and json.loads(out)["run_id"] == exported[0]["run_id"]
    code, out, _ = run_cli("status", "--db", db)
    assert code == 0 and "cli" in out and "done" in out
    code, out, _ = run_cli("status", "1", "--db", db, "--json")
    assert code == 0 and len(json.loads(out)) == 2
    report = tmp_path / "r" / "report.html"
    code, out, _ = run_cli("dashboard", "build", "--db", db, "--out", str(report))
    assert code == 0 and report.exists() and "2 runs" in out


def test_failed_run_exits_1(capsys, tmp_path, local_ray):
    db = f"sqlite:///{tmp_path}/pb.db"
    spec = write_spec(
        tmp_path, {"name": "f", "defaults": TINY | {"fault": "raise"}, "grid": {"model": ["transformer"]}}
    )
    code, out, _ = run_cli("run", spec, "--db", db, "--no-progress")
    assert code == 1 and "failed" in out


def test_dashboard_serve_needs_an_existing_database(tmp_path):
    code, _, err = run_cli("dashboard", "serve", "--db", f"sqlite:///{tmp_path}/none.db", "--port", "0")
    assert code == 2 and "no phasebench tables" in err and not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("group", [[], ["study"], ["results"], ["runs"], ["db"], ["dashboard"]])
def test_a_bare_group_prints_its_help_and_exits_0(group):
    done = subprocess.run([sys.executable, "-m", "phasebench", *group], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(f"Usage: phasebench {' '.join(group)}".rstrip() + " [OPTIONS] COMMAND")
    assert "\\n" not in done.stdout and "Commands:" in done.stdout


def test_a_postgres_url_is_read_as_postgresql(pg_url):
    url = pg_url.replace("postgresql://", "postgres://", 1)
    code, out, err = run_cli("db", "upgrade", "--db", url)
    assert code == 0 and "postgresql://" in out, err
    code, out, err = run_cli("db", "current", "--db", url)
    assert code == 0, err


@pytest.fixture
def listed_db(local_ray, sqlite_url):
    """Four benchmark runs (two models x two lengths) and one short training run."""
    tiny = {"device": "cpu", "d_model": 16, "n_layers": 1, "n_heads": 2, "vocab_size": 256, "isolate": False}
    api.run(
        {"name": "bench", "defaults": tiny, "grid": {"model": ["transformer", "phase7"], "seq_len": [8, 16]}},
        db=sqlite_url,
    )
    train = tiny | {"job": "train", "seq_len": 16, "batch_size": 2, "steps": 2, "eval_tokens": 64, "lr_warmup_steps": 0}
    api.run({"name": "train", "defaults": train, "grid": {"model": ["transformer"]}}, db=sqlite_url)
    return sqlite_url


def test_results_list_shows_the_run_id_the_swept_fields_and_training_figures(listed_db):
    code, out, err = run_cli("results", "list", "--batch", "bench", "--db", listed_db)
    header = out.splitlines()[0].split()
    assert code == 0 and header[:4] == ["run", "batch", "#", "seq_len"], err
    assert "d_model" not in header and "val" not in header  # not swept; no training run listed
    rows = api.results(listed_db, batch=["bench"])
    assert all(r["run_id"][:10] in out for r in rows)
    code, out, _ = run_cli("results", "list", "--batch", "train", "--db", listed_db)
    header, row = out.splitlines()[0], out.splitlines()[2]
    train = api.results(listed_db, batch=["train"])[0]
    assert header.split()[-4:] == ["loss", "val", "loss", "bpb"]
    assert row.split()[-1] == f"{train['extra']['bits_per_byte']:.4g}"


def test_results_list_columns_and_sort(listed_db):
    code, out, _ = run_cli(
        "results",
        "list",
        "--batch",
        "bench",
        "--columns",
        "model,seq_len,tok/s",
        "--sort",
        "-seq_len",
        "--db",
        listed_db,
    )
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["model", "seq_len", "tok/s"]
    assert [line.split()[1] for line in lines[2:]] == ["16", "16", "8", "8"]
    code, out, _ = run_cli("results", "list", "--batch", "bench", "--sort", "-#", "--columns", "#", "--db", listed_db)
    assert [line.strip() for line in out.splitlines()[2:]] == ["3", "2", "1", "0"]  # a header sorts as its field
    code, out, err = run_cli("results", "list", "--sort", "nope", "--db", listed_db)
    assert code == 2 and err.strip() == "error: --sort: unknown field 'nope'"
    code, out, err = run_cli("results", "list", "--columns", "model,bogus", "--db", listed_db)
    assert code == 2 and err.strip() == "error: --columns: unknown field 'bogus'"


def test_run_json_stdout_is_json_only_when_a_worker_dies(tmp_path):
    """Ray's driver prints `(raylet) A worker died ...` on stdout, during the batch and after it."""
    spec = write_spec(
        tmp_path, {"name": "crash", "defaults": TINY, "grid": {"model": ["transformer"], "fault": ["exit", "none"]}}
    )
    done = phasebench("run", spec, "--db", f"sqlite:///{tmp_path / 'pb.db'}", "--json", cwd=tmp_path)
    assert done.returncode == 1  # the dead worker's run is stored as failed
    assert json.loads(done.stdout)["counts"] == {"failed": 1, "ok": 1}
    assert "worker died" in done.stderr
