"""Run the `phasebench` entry point in-process, or the real command in a subprocess."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from phasebench.cli import main

REPO = Path(__file__).resolve().parents[1]
#: the smallest run the CLI tests start: one layer, 16 tokens, one step on the CPU (no model: the spec's grid names it)
TINY = {"vocab_size": 256, "d_model": 32, "n_layers": 1, "n_heads": 2, "device": "cpu", "seq_len": 16, "steps": 1}
#: a run with a warm-up step and a step after it, for the tests that stop and resume runs
TINY_TRAIN = TINY | {"seq_len": 32, "steps": 2, "warmup_steps": 1}


def phasebench(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The installed console script when present, else the module (same entry point); `stdin` is what a
    user types."""
    exe = Path(sys.executable).with_name("phasebench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "phasebench"]
    return subprocess.run(
        cmd + list(args),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )


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


def start_until_result(spawn: Callable[..., subprocess.Popen], args: list[str], cwd: Path, stored: Callable[[], int]):
    """`python -m phasebench *args` started through `spawn` (this checkout on PYTHONPATH, stdout and stderr piped)
    -> the running process once `stored()` counts a result. Fails with the command's stderr if it exits first,
    and after 120 s without one."""
    proc = spawn(
        [sys.executable, "-m", "phasebench", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 120
    while not stored():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no result stored within 120 s"
        time.sleep(0.2)
    return proc
