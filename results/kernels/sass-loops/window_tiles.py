"""Static SASS of the window backward's kernels at other tiles than the launchers', compiled for sm_90 on the CPU.

    python results/kernels/sass-loops/window_tiles.py --output results/kernels/sass-loops/window-tiles-<commit>.json

Run from the root of the checkout. bf16, head dim 64, window 64, `--aligned` as loops.py: for each (BQ, BK,
warps) the registers, spill and shared memory, whether the matrix products compile to mma.sync (HMMA) or wgmma
(HGMMA), and each loop's body per tile entry. Compile-time counts, not timings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent)]
import loops  # noqa: E402  (puts the checkout's kernels and probe on the path)

from kernels.window_attn import triton as wa  # noqa: E402

WINDOW = 64
CANDIDATES = {
    "_window_bwd_dkdv_kernel": [(32, 32, 4), (16, 64, 4), (32, 64, 4), (32, 64, 8), (64, 64, 4), (64, 64, 8)],
    "_window_bwd_dq_kernel": [(32, 32, 4), (64, 16, 4), (64, 32, 4), (64, 32, 8), (64, 64, 8)],
}


def row(fn, bq: int, bk: int, warps: int) -> dict:
    folded, side = (bq, bk) if fn is wa._window_bwd_dkdv_kernel else (bk, bq)
    consts = dict(D=64, DV=64, BQ=bq, BK=bk, BD=64, BDV=64, PREC="tf32", WIDE=wa._wide(WINDOW, side, folded))
    compiled = loops.probe.compile_for(fn, "bf16", consts, dict(num_warps=warps, num_stages=2), "fp32", 90,
                                       aligned=True)  # fmt: skip
    ins = loops.compiled_sass(compiled)
    found = loops.per_tile_entry(loops.loops(ins), bq * bk, warps)
    mma = Counter(t.split()[0].split(".")[0] for _, t in ins if "MMA" in t.split()[0])
    return {"kernel": fn.__name__, "BQ": bq, "BK": bk, "num_warps": warps, **loops.probe.resources(compiled),
            "mma": dict(mma), "loops": found}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args()
    rows = [row(getattr(wa, name), *tile) for name, tiles in CANDIDATES.items() for tile in tiles]
    for r in rows:
        per = [loop["per_tile_entry"] for loop in r["loops"]]
        print(f"{r['kernel']:26} {r['BQ']:>2} x {r['BK']:<2} w{r['num_warps']} reg {r['registers']} "
              f"spill {r['spill']} {r['mma']} per entry {per}")  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"command": " ".join(["python", *sys.argv]), "commit": commit, "triton": loops.triton.__version__,
              "window": WINDOW, "rows": rows}  # fmt: skip
    args.output.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
