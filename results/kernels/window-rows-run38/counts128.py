"""The window backward kernels compiled for sm_90 (no GPU) at head dim D (argument), bf16, aligned, with the plain
reload and with the identity product forced: epilogue_counts.py's counts (instructions, the epilogue's, 64 x 64
conversions, barriers, registers, spill). Output: counts128.txt. Run from the repository root.

    PYTHONPATH=<triton wheel> python results/kernels/window-rows-run38/counts128.py 128
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

ROOT = Path.cwd()
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "kernels"), str(ROOT / "results" / "kernels" / "epilogue-layouts")]
warnings.simplefilter("ignore")

import shared_memory_probe as probe  # noqa: E402
import triton  # noqa: E402
from epilogue_counts import counts  # noqa: E402

from bench.tiles import swapped  # noqa: E402
from kernels.window_attn import triton as wa  # noqa: E402

RELOADS = {"plain": lambda BD, BDV, fp32: False, "identity product": lambda BD, BDV, fp32: True}

if __name__ == "__main__":
    d = int(sys.argv[1])
    print(f"triton {triton.__version__}, sm_90, bf16, head dim {d}, aligned")
    for name, choice in RELOADS.items():
        with swapped(wa, "_rows_by_dot", choice):
            for _, fn, consts, launch in probe.kernels("bf16", d, aligned=True):
                if not fn.__name__.startswith("_window_bwd"):
                    continue
                found = counts(probe.compile_for(fn, "bf16", consts, launch, "fp32", 90, aligned=True))
                print(f"{name:16s} {fn.__name__:24s} " + "  ".join(f"{k} {v}" for k, v in found.items()), flush=True)
