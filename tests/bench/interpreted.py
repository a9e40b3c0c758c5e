"""Environment for the bench scripts' own processes under the Triton interpreter: TRITON_INTERPRET=1, and the
suite's interpreter shortcuts (tests/triton_interpreter.py) installed at start-up by a sitecustomize module on
their PYTHONPATH (the variable is set before triton is imported there). A test that uses it checks that the
process's stderr holds no "Error in sitecustomize"."""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SITECUSTOMIZE = f"""import sys
sys.path.insert(0, {str(TESTS)!r})
import triton_interpreter
triton_interpreter.install()
"""


def interpreted_env(tmp_path: Path) -> dict[str, str]:
    """os.environ with TRITON_INTERPRET=1 and the interpreter's shortcuts installed at start-up."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return os.environ | {"TRITON_INTERPRET": "1", "PYTHONPATH": path}
