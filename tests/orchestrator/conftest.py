"""Fixtures of the orchestrator tests."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """An empty working directory for a command (no default phasebench.db may appear in it)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def spawn():
    """`subprocess.Popen` in a session of its own; at teardown the whole session is killed, so a driver
    killed or failed mid-test leaves no Ray processes (raylet, GCS, workers) behind for later tests."""
    started: list[subprocess.Popen] = []

    def start(cmd: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
