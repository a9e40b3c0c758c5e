"""The host cost of kernels/launch.py's key on this machine (no GPU needed), for the adjoint sweep's 18 positional
arguments (13 tensors, 5 ints): the landed key (scalars by value), the key as shipped before it (604e00c's
`specialisation_key`, the JIT's classes, read from git), and run 39's stand-in for that key in
launch_ab_run39.py (`_class_key`, the same classes). timeit, 50,000 calls a round, the best of 5 rounds.

    python3 results/kernels/launch-run39/key_cost.py      # from a git checkout
"""

import importlib.util
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from launch_ab_run39 import _class_key  # noqa: E402

from kernels.launch import specialisation_key  # noqa: E402

ARGS = tuple(torch.zeros(64) for _ in range(13)) + (16384, 64, 128, 128, 1)


def shipped_before():
    """604e00c's specialisation_key(constexpr, args), bound to the adjoint sweep's flags (no positional constexpr)."""
    source = subprocess.run(["git", "show", "604e00c:kernels/launch.py"], capture_output=True, text=True, check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source.stdout)
    spec = importlib.util.spec_from_file_location("launch_604e00c", f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flags = (False,) * len(ARGS)
    return lambda args: module.specialisation_key(flags, args)


if __name__ == "__main__":
    keys = {"landed, by value": specialisation_key, "604e00c, the JIT's classes": shipped_before()}
    keys["run 39's _class_key"] = _class_key
    for name, key in keys.items():
        best = min(timeit.repeat(lambda k=key: k(ARGS), number=50_000, repeat=5)) / 50_000 * 1e6
        print(f"{name:28s} {best:.2f} us")
