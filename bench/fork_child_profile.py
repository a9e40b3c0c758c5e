"""Where a forked run's time goes: cProfile of `worker.run_job` in children of one warm parent.

    python bench/fork_child_profile.py              # on a GPU machine (DEV=cpu for a CPU one)

The parent warms up as a fork server does (`worker._warm_up`, CUDA untouched); each case runs in a child
forked from it, as `execute_forked` runs a config, and prints its wall time and the top of its profile:
a tiny transformer twice, a tiny phase7, and the seed report's Standard inference for its three families.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import worker  # noqa: E402
from orchestrator.environment import git_state  # noqa: E402
from orchestrator.spec import expand  # noqa: E402

DEV = os.environ.get("DEV", "cuda")
TINY = {"model": "transformer", "vocab_size": 64, "d_model": 16, "n_layers": 1, "n_heads": 2, "seq_len": 8}
TINY |= {"batch_size": 1, "device": DEV, "steps": 1, "warmup_steps": 0, "precision": "fp32", "execution": "eager"}
SEED = {"batch_size": 1, "seq_len": 512, "vocab_size": 50257, "embed_rank_ratio": 0.25, "ffn_rank_ratio": 0.125}
SEED |= {"grad_checkpoint": True, "warmup_steps": 2, "steps": 5, "d_model": 2048, "n_layers": 48, "n_heads": 16}
SEED |= {"mode": "inference", "precision": "pure_fp16", "execution": "eager", "device": DEV}
CASES = [
    ("tiny-transformer", TINY),
    ("tiny-transformer-again", TINY),
    ("tiny-phase7", TINY | {"model": "phase7"}),
    ("seed-phase7", SEED | {"model": "phase7-seed"}),
    ("seed-phase8", SEED | {"model": "phase8-seed"}),
    ("seed-transformer", SEED | {"model": "transformer"}),
]


def profile_child(name: str, config: dict, git: dict) -> None:
    """Runs in the forked child: never returns. Prints its wall time, the top of its profile by cumulative
    time and by own time, and the modules it imported (each one a cost the fork server could take on)."""
    inherited = set(sys.modules)
    profile = cProfile.Profile()
    began = time.perf_counter()
    profile.enable()
    outcome = worker.run_job(config, git, None)
    profile.disable()
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)
    print(f"== {name} child {time.perf_counter() - began:.2f}s status {outcome['status']} {outcome.get('error')}")
    print(text.getvalue()[-16000:])
    print(f"== {name} imported {sorted(set(sys.modules) - inherited)}", flush=True)
    os._exit(0)


def resolved(raw: dict) -> dict:
    return expand({"name": "p", "defaults": raw, "grid": {"seed": [0]}}).runs[0].config


def main() -> None:
    configs = [(name, resolved(raw)) for name, raw in CASES]
    began = time.perf_counter()
    worker._warm_up(configs[0][1])
    print(f"warm-up {time.perf_counter() - began:.2f}s", flush=True)
    git = git_state()
    for name, config in configs:
        began = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            profile_child(name, config, git)
        os.waitpid(pid, 0)
        print(f"== {name} wall {time.perf_counter() - began:.2f}s", flush=True)


if __name__ == "__main__":
    main()
