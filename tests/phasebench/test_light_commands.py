"""Commands that never touch a model stay light: no torch, Ray or Plotly is imported by `phasebench --help`,
`results list` (a `--where` on a result field included) or `status` (they start in ~0.4 s instead of ~1.7 s
on the 2-core CI machine)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator import api

HEAVY = ("torch", "triton", "ray", "plotly", "optuna")
PROBE = """
import sys
from phasebench.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print("LOADED", ",".join(m for m in {heavy!r} if m in sys.modules), "EXIT", code)
"""


def loaded_by(*argv: str) -> tuple[set[str], int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], capture_output=True, text=True, check=False
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED"))
    _, modules, _, code = line.split(" ")
    return set(filter(None, modules.split(","))), int(code)


@pytest.fixture
def small_db(local_ray, sqlite_url):
    spec = {
        "name": "light",
        "defaults": {
            "device": "cpu",
            "d_model": 16,
            "n_layers": 1,
            "n_heads": 2,
            "vocab_size": 64,
            "seq_len": 8,
            "isolate": False,
        },
        "grid": {"model": ["transformer"]},
    }
    api.run(spec, db=sqlite_url)
    return sqlite_url


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["results"],
        ["results", "list", "DB"],
        ["results", "list", "--where", "status!=ok", "--limit", "1", "DB"],
        ["runs", "--help"],
        ["status", "DB"],
        ["status", "1", "DB"],
    ],
)
def test_commands_without_a_model_import_no_heavy_library(argv, small_db):
    argv = [a for arg in argv for a in (["--db", small_db] if arg == "DB" else [arg])]
    modules, code = loaded_by(*argv)
    assert code == 0 and modules == set()


def test_a_where_filter_loads_the_models_to_check_the_field(small_db):
    modules, code = loaded_by("results", "list", "--where", "d_model=16", "--db", small_db)
    assert code == 0 and "torch" in modules
