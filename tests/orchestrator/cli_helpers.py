"""Run the `phasebench` entry point in-process."""

from __future__ import annotations

import contextlib
import io

from orchestrator.cli import main


def run_cli(*args: str) -> tuple[int, str, str]:
    """main() in-process: (exit code, stdout, stderr). Any other exception propagates (a crash)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()
