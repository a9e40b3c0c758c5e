"""A user's model family reached from a spec (`imports:`), the CLI (`--import`), the API (`imports=`) and an
entry point: it runs on real local Ray workers, a changed module changes the config hash, and every bad
module is a one-line error (exit 2, nothing written). Each command runs in its own process, so that no
family registered here leaks into the other tests' registry."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import REPO, phasebench

from models import ConfigError
from orchestrator.user_code import absolute_imports, source_digest

MODULE = """
from dataclasses import dataclass

from torch import nn

import models
from models import knob


@dataclass
class MLPConfig(models.ModelConfig):
    hidden_mult: int = knob(2, min=1, max=8)


class MLPLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.hidden_mult * c.d_model), nn.GELU(),
                                 nn.Linear(c.hidden_mult * c.d_model, c.d_model))
        self.head = nn.Linear(c.d_model, c.vocab_size)

    def forward(self, ids):  # (B, N) -> (B, N, V)
        return self.head(self.mlp(self.embed(ids)))


models.register_family("my-mlp", MLPConfig, MLPLM)
"""
TINY = {"device": "cpu", "d_model": 16, "n_layers": 1, "n_heads": 2, "vocab_size": 64, "seq_len": 16, "steps": 1}
SPEC = {"name": "mine", "imports": ["mymlp.py"], "defaults": TINY, "grid": {"model": ["my-mlp", "transformer"]}}
MINE = {"name": "mine", "defaults": TINY, "grid": {"model": ["my-mlp"]}}  # no imports of its own


def write(folder: Path, module: str = MODULE, spec: dict | None = None) -> Path:
    (folder / "mymlp.py").write_text(textwrap.dedent(module))
    (folder / "spec.yaml").write_text(json.dumps(spec or SPEC))  # JSON is YAML
    return folder / "spec.yaml"


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            'select model, status, config_hash, reused_run_id, config from pb_runs order by batch_id, "index"'
        ).fetchall()


def failed_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stderr.strip().splitlines()[-1]


def test_a_family_from_the_spec_runs_on_ray_workers_and_one_changed_line_changes_its_hash(tmp_path):
    spec = write(tmp_path)
    elsewhere = tmp_path / "elsewhere"  # the spec's imports are relative to the spec, not the working directory
    elsewhere.mkdir()
    first = phasebench("run", str(spec), "--db", "sqlite:///pb.db", "--no-progress", cwd=elsewhere)
    assert first.returncode == 0, first.stderr[-3000:]
    stored = rows(elsewhere / "pb.db")
    assert [(m, s) for m, s, *_ in stored] == [("my-mlp", "ok"), ("transformer", "ok")]
    mine, builtin = (json.loads(r[4]) for r in stored)
    assert mine["model_module"] == "mymlp" and mine["model_source"] == source_digest(tmp_path / "mymlp.py")
    assert mine["hidden_mult"] == 2 and "model_source" not in builtin  # built-ins hash as before

    write(tmp_path, MODULE.replace("nn.GELU()", "nn.ReLU()"))
    again = phasebench("run", str(spec), "--db", "sqlite:///pb.db", "--no-progress", cwd=elsewhere)
    assert again.returncode == 0, again.stderr[-3000:]
    stored = rows(elsewhere / "pb.db")
    assert [(m, s) for m, s, *_ in stored[2:]] == [("my-mlp", "ok"), ("transformer", "skipped")]
    assert stored[2][2] != stored[0][2] and stored[3][2] == stored[1][2]  # no stale `skipped` for the edit


def test_a_batch_whose_module_changed_is_not_resumed_with_the_new_code(tmp_path):
    write(tmp_path)
    queue = "from orchestrator import api; from orchestrator.store.repository import Store\n"
    queue += "Store('sqlite:///pb.db').create_batch(api.plan('spec.yaml'))"  # queued, never run
    queued = subprocess.run([sys.executable, "-c", queue], cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert queued.returncode == 0, queued.stderr[-3000:]
    write(tmp_path, MODULE.replace("nn.GELU()", "nn.ReLU()"))
    proc = phasebench("run", "--resume", "mine", "--db", "sqlite:///pb.db", cwd=tmp_path)
    assert "model_source: my-mlp's code (mymlp) now hashes" in failed_line(proc)
    assert {r[1] for r in rows(tmp_path / "pb.db")} == {"pending"}


@pytest.mark.parametrize(
    "module, message",
    [
        ("import no_such_package_xyz\n", "imports: failed to import: ModuleNotFoundError: No module named"),
        ("raise RuntimeError('first line\\nsecond line')\n", "imports: failed to import: RuntimeError: first line ("),
        (
            MODULE.replace('"my-mlp"', '"transformer"'),
            "model: is already registered (by models.transformer); choose another family name",
        ),
        (
            MODULE.replace("def __init__(self, c):", "def __init__(self, c):\n        raise ValueError('no')"),
            ("model: building or running the default config raised ValueError: no (got 'my-mlp')"),
        ),
        (
            MODULE.replace("return self.head(", "return self.mlp(self.embed(ids))  # ("),
            "model: forward must return (B, N, vocab_size) logits (2, 8, 50257), got (2, 8, 512)",
        ),
    ],
    ids=["missing-dependency", "raises", "name-taken", "builder-raises", "wrong-logits"],
)
def test_a_bad_module_is_one_line_exit_2_and_nothing_written(tmp_path, module, message):
    spec = write(tmp_path, module)
    line = failed_line(phasebench("run", str(spec), "--db", "sqlite:///pb.db", cwd=tmp_path))
    assert line.startswith(f"error: {message}"), line
    assert "second line" not in line and not (tmp_path / "pb.db").exists()


def test_a_plain_module_family_refuses_the_chunked_loss_head(tmp_path):
    spec = write(tmp_path, spec=SPEC | {"defaults": TINY | {"mode": "train", "loss_chunk_tokens": 8}})
    line = failed_line(phasebench("run", str(spec), "--db", "sqlite:///pb.db", cwd=tmp_path))
    assert line.startswith("error: loss_chunk_tokens: needs hidden() and project_to_vocab() on the model, which my-mlp")


def test_a_family_registered_by_a_script_is_refused_before_anything_runs(tmp_path):
    script = MODULE + f"\nfrom orchestrator import api\napi.run({MINE!r})\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert "model: is registered by '__main__', which workers cannot import" in proc.stderr
    assert not (tmp_path / "phasebench.db").exists()


def test_the_cli_import_option_reaches_the_family_and_its_exceptions_are_stored_whole(tmp_path):
    """`--import` names the module; the family runs in its worker and raises there an exception of a class
    Ray could not rebuild on the driver (two required arguments): the row holds its type and message."""
    module = (
        MODULE.replace(
            "    def forward(self, ids):  # (B, N) -> (B, N, V)\n",
            "    def forward(self, ids):  # (B, N) -> (B, N, V)\n        if ids.shape[1] > 8:\n"
            "            raise Picky('too long', ids.shape[1])\n",
        )
        + "\n\nclass Picky(Exception):\n    def __init__(self, what, n):\n        super().__init__(f'{what}: {n}')\n"
    )
    write(tmp_path, module, MINE)
    proc = phasebench("run", "spec.yaml", "--import", "mymlp.py", "--db", "sqlite:///pb.db", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert [(m, s) for m, s, *_ in rows(tmp_path / "pb.db")] == [("my-mlp", "failed")]
    with sqlite3.connect(tmp_path / "pb.db") as con:
        (error,) = con.execute("select error from pb_results").fetchone()
    assert "Picky: too long: 16" in error and "Unserializable" not in error


def test_an_installed_package_registers_through_its_entry_point(tmp_path):
    site = tmp_path / "site"
    (site / "mymlp_pkg").mkdir(parents=True)
    (site / "mymlp_pkg" / "__init__.py").write_text(textwrap.dedent(MODULE))
    info = site / "mymlp_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mymlp-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[phasebench.models]\nmymlp = mymlp_pkg\n")
    (tmp_path / "spec.yaml").write_text(json.dumps(MINE))
    proc = subprocess.run(
        [sys.executable, "-m", "phasebench", "run", "spec.yaml", "--db", "sqlite:///pb.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(site),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ((model, status, _, _, config),) = rows(tmp_path / "pb.db")
    assert (model, status, json.loads(config)["model_module"]) == ("my-mlp", "ok", "mymlp_pkg")


def test_imports_are_made_absolute_against_the_spec_folder(tmp_path):
    (tmp_path / "one.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    assert absolute_imports(["one.py", "one", "pkg", "json"], tmp_path) == [
        str(tmp_path / "one.py"),
        str(tmp_path / "one.py"),
        str(tmp_path / "pkg"),
        "json",
    ]
    for bad, message in ((["nope.py"], "no such file or folder"), ("one.py", "must be a list"), ([""], "must be")):
        with pytest.raises(ConfigError) as info:
            absolute_imports(bad, tmp_path)
        assert str(info.value).startswith(f"imports: {message}")


def test_code_over_the_size_limit_is_refused(tmp_path):
    spec = write(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "pkg" / "weights.bin").write_bytes(b"\0" * 2**20)
    spec.write_text(json.dumps(SPEC | {"imports": ["pkg"]}))
    proc = subprocess.run(
        [sys.executable, "-m", "phasebench", "run", "spec.yaml", "--db", "sqlite:///pb.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env() | {"PHASEBENCH_USER_CODE_LIMIT_MB": "0.5"},
    )
    line = failed_line(proc)
    assert "is 1.0 MiB of files; code shipped to workers is limited to 0.5 MiB" in line, line


def _env(*extra: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), *map(str, extra)])}
