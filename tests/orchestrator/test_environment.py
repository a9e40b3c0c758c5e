"""The git state recorded with every result."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.environment import REPO_ROOT, git_state


@pytest.fixture(autouse=True)
def fresh_git_state():
    git_state.cache_clear()  # cached per process: each test reads its own environment
    yield
    git_state.cache_clear()


def test_the_checkouts_own_commit_without_a_shipped_one(monkeypatch):
    monkeypatch.delenv("PHASEBENCH_GIT_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert git_state()["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)


def test_a_shipped_commit_wins_over_the_copys_git(monkeypatch):
    monkeypatch.setenv("PHASEBENCH_GIT_COMMIT", "0123abc")
    monkeypatch.setenv("PHASEBENCH_GIT_DIRTY", "0")
    assert git_state() == {"git_commit": "0123abc", "git_dirty": False}
