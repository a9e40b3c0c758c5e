"""Where Triton converts layouts around a row reduction that follows a tensor-core dot (sm_90, no GPU).

    PYTHONPATH=<triton wheel> python results/kernels/epilogue-layouts/reduce_layouts.py

A 64 x 64 dot result (the MMA layout) is reduced along its rows, alone (`acc * acc`) or multiplied first by a
tile loaded from memory (the load's blocked layout), as the window backward's epilogues do (x . dx, q . dx).
Prints each variant's layout conversions from the compiled TTGIR. Compiles through the shared-memory probe's
compile_for, run from the repository root.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

ROOT = Path.cwd()
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "kernels")]
warnings.simplefilter("ignore")

import shared_memory_probe as probe  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

VARIANTS = {
    0: "sum(acc * acc)",
    1: "sum(acc * x)",
    2: "sum(acc * x + acc * 0)",
    3: "sum(acc * acc + acc * x)",
    4: "y = acc * x; sum(y * y)",
    5: "sum(where(acc == acc, acc * x, 0))",
    6: "sum(acc * x), x loaded as 4,096 values and reshaped",
    7: "sum(acc * v[:, None]), v a loaded row vector",
    8: "sum(acc * acc2), acc2 a second dot",
}


@triton.jit
def _row_sums(A, B, X, OUT, VARIANT: tl.constexpr):
    rows = tl.arange(0, 64)
    cols = tl.arange(0, 64)
    a = tl.load(A + rows[:, None] * 64 + cols[None, :])
    b = tl.load(B + rows[:, None] * 64 + cols[None, :])
    acc = tl.dot(a, tl.trans(b))  # (64, 64) float32, the MMA layout
    x = tl.load(X + rows[:, None] * 64 + cols[None, :]).to(tl.float32)  # (64, 64), the load's layout
    if VARIANT == 0:
        s = tl.sum(acc * acc, axis=1)
    elif VARIANT == 1:
        s = tl.sum(acc * x, axis=1)
    elif VARIANT == 2:
        s = tl.sum(acc * x + acc * 0.0, axis=1)
    elif VARIANT == 3:
        s = tl.sum(acc * acc + acc * x, axis=1)
    elif VARIANT == 4:
        y = acc * x
        s = tl.sum(y * y, axis=1)
    elif VARIANT == 5:
        s = tl.sum(tl.where(acc == acc, acc * x, 0.0), axis=1)
    elif VARIANT == 6:
        flat = tl.load(X + tl.arange(0, 64 * 64)).to(tl.float32)
        s = tl.sum(acc * tl.reshape(flat, (64, 64), can_reorder=False), axis=1)
    elif VARIANT == 7:
        s = tl.sum(acc * tl.load(X + rows).to(tl.float32)[:, None], axis=1)
    else:
        s = tl.sum(acc * tl.dot(b, tl.trans(a)), axis=1)
    tl.store(OUT + rows, s)


def conversions(variant: int) -> list[str]:
    """The variant's convert_layout ops: 'shape: from -> to'."""
    compiled = probe.compile_for(
        _row_sums, "bf16", dict(VARIANT=variant), dict(num_warps=4), "fp32", 90, {"OUT": "*fp32"}, aligned=True
    )
    found = []
    for line in compiled.asm["ttgir"].splitlines():
        if "ttg.convert_layout" in line:
            src, dst = line.split(" : ")[1].split(" loc(")[0].split(" -> ")
            found.append(f"{src} -> {dst}")
    return found


if __name__ == "__main__":
    print(f"triton {triton.__version__}, sm_90, 4 warps")
    for variant, text in VARIANTS.items():
        found = conversions(variant)
        print(f"{text}: {len(found)} conversions")
        for line in found:
            print(f"    {line}")
