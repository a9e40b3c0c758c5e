"""Fixtures of the orchestrator tests."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """An empty working directory for a command (no default phasebench.db may appear in it)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder
