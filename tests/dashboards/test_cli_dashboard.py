"""`phasebench dashboard build --from-export --kernels` and `serve --kernels`: built from committed files,
combined with a database, bad input refused with one line and exit code 2, nothing written."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli
from dashboard_samples import EVIL, TINY, kernel_file, result_row, sweep_rows

from orchestrator.spec import expand
from orchestrator.store.repository import Store


@pytest.fixture
def files(tmp_path, monkeypatch):
    """(export, second export, kernels) in tmp_path, which is also the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PHASEBENCH_DB", raising=False)
    paths = tmp_path / "sweep.json", tmp_path / "other.json", tmp_path / "kernels.json"
    paths[0].write_text(json.dumps(sweep_rows()))
    paths[1].write_text(json.dumps([result_row("phase7", batch=EVIL)]))
    paths[2].write_text(json.dumps(kernel_file()))
    return [str(p) for p in paths]


def test_build_from_exports_and_kernels_reads_no_database(files, tmp_path):
    out = tmp_path / "site" / "index.html"
    code, stdout, _ = run_cli(
        "dashboard",
        "build",
        "--from-export",
        files[0],
        "--from-export",
        files[1],
        "--kernels",
        files[2],
        "--out",
        str(out),
    )
    assert code == 0 and f"({len(sweep_rows()) + 1} runs)" in stdout
    text = out.read_text()
    assert "Kernel scan" in text and "Crossover against the transformer" in text and EVIL not in text
    assert not (tmp_path / "phasebench.db").exists()  # the default database was not read (nor created)
    code, stdout, _ = run_cli(
        "dashboard", "build", "--from-export", files[0], "--from-export", files[1], "--batch", EVIL, "--out", str(out)
    )
    assert code == 0 and "(1 runs)" in stdout


def test_two_reports_built_with_plotlyjs_share_one_copy_by_relative_path(files, tmp_path):
    shared = tmp_path / "site" / "plotly.min.js"
    for out in (tmp_path / "site" / "a" / "index.html", tmp_path / "site" / "b" / "c" / "index.html"):
        code, _, err = run_cli(
            "dashboard", "build", "--from-export", files[0], "--out", str(out), "--plotlyjs", str(shared)
        )
        assert code == 0, err
    assert 'src="../plotly.min.js"' in (tmp_path / "site" / "a" / "index.html").read_text()
    assert 'src="../../plotly.min.js"' in (tmp_path / "site" / "b" / "c" / "index.html").read_text()
    assert shared.read_text().startswith("/**") and shared.stat().st_size > 1_000_000  # plotly.js itself
    embedded = tmp_path / "alone.html"
    assert run_cli("dashboard", "build", "--from-export", files[0], "--out", str(embedded))[0] == 0
    assert embedded.stat().st_size > shared.stat().st_size  # the default stays self-contained


def test_build_combines_a_database_with_exports(files, tmp_path, sqlite_url):
    store = Store(sqlite_url)
    batch = store.create_batch(expand({"name": "db-batch", "defaults": TINY, "grid": {"model": ["transformer"]}}))
    run = store.reset_unfinished(batch.id)[0]
    store.record_result(run.id, {"status": "ok", "stage": "done", "params": 10, "weights_bytes": 2**20})
    store.close()
    out = tmp_path / "both.html"
    code, stdout, _ = run_cli("dashboard", "build", "--db", sqlite_url, "--from-export", files[0], "--out", str(out))
    assert code == 0 and f"({len(sweep_rows()) + 1} runs)" in stdout and "db-batch" in out.read_text()


@pytest.mark.parametrize(
    "option, content, message",
    [
        ("--from-export", "[1, 2]", "row 0 lacks run_id"),
        ("--from-export", "{not json", "is not JSON"),
        ("--from-export", None, "cannot read"),
        (
            "--kernels",
            json.dumps({"rows": [], "copy_bandwidth_Bps": -1}),
            "copy_bandwidth_Bps is not a positive number",
        ),
        ("--kernels", json.dumps(sweep_rows()), "expected a JSON object with a rows list"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(files, tmp_path, option, content, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    out = tmp_path / "never" / "index.html"
    code, stdout, stderr = run_cli("dashboard", "build", "--from-export", files[0], option, str(bad), "--out", str(out))
    assert code == 2 and stderr.startswith(f"error: {option}: ") and message in stderr
    assert stderr.count("\n") == 1 and not out.exists() and not out.parent.exists() and stdout == ""


def test_serve_refuses_a_bad_kernel_file_before_listening(files, tmp_path, sqlite_url):
    Store(sqlite_url).close()
    code, _, stderr = run_cli("dashboard", "serve", "--db", sqlite_url, "--kernels", files[0], "--port", "0")
    assert code == 2 and stderr.startswith("error: --kernels: ") and "sweep.json" in stderr
