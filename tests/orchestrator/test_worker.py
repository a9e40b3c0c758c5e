"""The worker runs each config's job under the kernel backend the config names."""

from __future__ import annotations

import pytest

from kernels.backend import current_backend, set_backend
from orchestrator import worker
from orchestrator.spec import expand

TINY = {
    "vocab_size": 64,
    "d_model": 32,
    "n_layers": 1,
    "n_heads": 2,
    "device": "cpu",
    "seq_len": 16,
    "warmup_steps": 0,
    "steps": 1,
}


@pytest.fixture(autouse=True)
def environment_backend(monkeypatch):
    monkeypatch.setenv("PHASEBENCH_KERNELS", "auto")
    yield
    set_backend(None)


def config(kernels):
    data = {"name": "w", "defaults": TINY | {"kernels": kernels}, "grid": {"model": ["phase7"]}}
    return expand(data).runs[0].config


def test_a_reused_worker_takes_each_runs_backend_not_the_last_ones():
    git = {"git_commit": None, "git_dirty": None}
    assert worker.execute(config("torch"), git)["status"] == "ok"
    assert current_backend() == "torch"
    assert worker.execute(config("auto"), git)["status"] == "ok"
    assert current_backend() == "auto"


def test_a_config_stored_before_the_newer_run_fields_runs_at_their_defaults():
    """`--resume` hands the worker configs as they were stored: older ones lack later run fields."""
    old = {k: v for k, v in config("torch").items() if k not in ("kernels", "execution", "loss_chunk_tokens")}
    old["compile"] = False  # the field execution replaced
    result = worker.execute(old, {"git_commit": None, "git_dirty": None})
    assert result["status"] == "ok", result.get("error")
    assert current_backend() == "auto"
