"""The window backward kernels compiled for sm_90 (no GPU) with each epilogue reload: SASS instructions, those after
the last loop (the epilogue), 64 x 64 layout conversions there (TTGIR), barriers, registers and spill.

    PYTHONPATH=<triton wheel> python results/kernels/epilogue-layouts/epilogue_counts.py

bf16 at head dim 64, tiled and launched as _launch_bwd launches them at the benchmark's shapes (the shared-memory
probe's --aligned); "plain" is the reload before the identity product (_rows_by_dot returning False). Run from
the repository root.
"""

from __future__ import annotations

import collections
import re
import sys
import warnings
from pathlib import Path

ROOT = Path.cwd()
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "kernels")]
warnings.simplefilter("ignore")

import shared_memory_probe as probe  # noqa: E402
import triton  # noqa: E402

from bench.tiles import swapped  # noqa: E402
from kernels.window_attn import triton as wa  # noqa: E402

RELOADS = {"plain": lambda BD, BDV, fp32: False, "identity product": wa._rows_by_dot}


def opcodes(lines: list[str]) -> collections.Counter:
    return collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0] for t in lines)


def counts(compiled) -> dict:
    """Instructions, the epilogue's (after the last backward branch), its 64 x 64 conversions, barriers, spill."""
    text = probe.cuobjdump(compiled, "-sass")
    sass = [(int(a, 16), t) for a, t in re.findall(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", text)]
    loop_ends = [i for i, (a, t) in enumerate(sass) if (m := re.search(r"BRA 0x([0-9a-f]+)", t)) and int(m[1], 16) < a]
    epilogue = [t for _, t in sass[max(loop_ends, default=0) + 1 :]]
    ttgir = compiled.asm["ttgir"]
    tail = ttgir[ttgir.rfind("pendings = 0") :]  # after the last dot's final wait
    res = probe.resources(compiled)
    return dict(
        instructions=len(sass),
        epilogue=len(epilogue),
        conversions_64x64=len(re.findall(r"convert_layout[^\n]*tensor<64x64x", tail)),
        barriers=opcodes([t for _, t in sass])["BAR"],
        registers=res["registers"],
        spill=res["spill"],
    )


if __name__ == "__main__":
    print(f"triton {triton.__version__}, sm_90, bf16, head dim 64, aligned")
    for name, choice in RELOADS.items():
        with swapped(wa, "_rows_by_dot", choice):
            for _, fn, consts, launch in probe.kernels("bf16", 64, aligned=True):
                if not fn.__name__.startswith("_window_bwd"):
                    continue
                found = counts(probe.compile_for(fn, "bf16", consts, launch, "fp32", 90, aligned=True))
                print(f"{name:16s} {fn.__name__:24s} " + "  ".join(f"{k} {v}" for k, v in found.items()))
