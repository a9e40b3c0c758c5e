"""The environment recorded with every result: GPU, driver, CUDA, torch, triton, Python, host, git."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """The project's git commit and dirty flag: PHASEBENCH_GIT_COMMIT (and PHASEBENCH_GIT_DIRTY=0/1) when set,
    else the checkout's own (None where it is not a git repository)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    shipped = os.environ.get("PHASEBENCH_GIT_COMMIT")
    if shipped:  # a copy shipped to a GPU box: the shipper's word wins over whatever .git the copy has
        dirty = os.environ.get("PHASEBENCH_GIT_DIRTY")
        return {"git_commit": shipped, "git_dirty": None if dirty is None else dirty == "1"}
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None or commit is None else bool(status)}


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def collect(device: str, git: dict | None = None) -> dict:
    """Describe this process's machine. `git` (from the driver) overrides the local git state."""
    import torch

    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu_name": None,
        "gpu_count": 0,
        "driver": None,
        "triton": _triton_version(),
    }
    if device == "cuda" and torch.cuda.is_available():
        env.update(gpu_name=torch.cuda.get_device_name(), gpu_count=torch.cuda.device_count(), driver=_driver_version())
    env.update(git or git_state())
    env["details"] = {"platform": platform.platform(), "cpu_count": _cpu_count(), "machine": platform.machine()}
    return env


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def environment_hash(env: dict) -> str:
    return hashlib.sha256(json.dumps(env, sort_keys=True, default=str).encode()).hexdigest()
