"""Run 40's choices at head dim 128, bf16, from the compiler (no GPU): every tile and launch bench/tiles.py times
for the window's forward and its two backward kernels, compiled for sm_90 as a launch with aligned arguments
specialises it, with its registers, spill, shared memory and the programs an SM can hold by each.

    PYTHONPATH=<triton 3.6>:. python3 results/kernels/window-d128-run40/prescreen.py OUT.json

(triton 3.6 is the GPUs' version; the kernels' registers differ under 3.9.)
"""

import json
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "kernels"))

import torch  # noqa: E402
import triton  # noqa: E402
from shared_memory_probe import SHARED_MEMORY_PER_BLOCK_OPTIN, compile_for, resources  # noqa: E402

from bench.tiles import LAUNCHES, WINDOW_FWD_TILES, WINDOW_SPLIT_TILES  # noqa: E402
from kernels.window_attn import triton as wa  # noqa: E402

D = 128
#: sm_90: registers, warps and shared memory an SM holds
SM_REGISTERS, SM_WARPS, SM_SHARED = 65536, 64, 228 * 1024


def choices():
    """(kernel name, constexprs, launch) for each choice: the forward's tiles, then each backward kernel's."""
    BD, BDV, *_, prec = wa._cfg(D, D, torch.bfloat16, 64, None, None)
    for bm, bn in WINDOW_FWD_TILES:
        consts = dict(D=D, DV=D, BM=bm, BN=bn, BD=BD, BDV=BDV, PREC=prec, WIDE=wa._wide(64, bm, bn))
        for warps, stages in LAUNCHES:
            yield "_window_fwd_kernel", consts, dict(num_warps=warps, num_stages=stages)
    for index, kind in enumerate(WINDOW_SPLIT_TILES):  # the dk/dv kernel, then the dq kernel, as _split_plan
        for bq, bk in WINDOW_SPLIT_TILES[kind]:
            fn, consts, _ = list(wa._split_plan(D, D, torch.bfloat16, 64, block_m=bq, block_n=bk))[index]
            for warps, stages in LAUNCHES:
                yield fn.__name__, consts, dict(num_warps=warps, num_stages=stages)


def probe(task):
    name, consts, launch = task
    warnings.simplefilter("ignore")
    try:
        need = resources(compile_for(getattr(wa, name), "bf16", consts, launch, "fp32", 90, aligned=True))
    except Exception as e:  # noqa: BLE001
        return dict(kernel=name, **launch, error=f"{type(e).__name__}: {str(e)[:120]}")
    warps = launch["num_warps"]
    per_sm = min(SM_REGISTERS // (need["registers"] * 32 * warps), SM_WARPS // warps, SM_SHARED // max(1, need["shared"]))
    tiles = {k: consts[k] for k in ("BM", "BN", "BQ", "BK") if k in consts}
    fits = need["shared"] <= SHARED_MEMORY_PER_BLOCK_OPTIN[90]
    return dict(kernel=name, **tiles, **launch, **{k: need[k] for k in ("registers", "spill", "shared")},
                programs_per_sm=per_sm, warps_per_sm=per_sm * warps, fits=fits)  # fmt: skip


def main(out):
    tasks = list(choices())
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        rows = list(pool.map(probe, tasks))
    for r in rows:
        print(r)
    Path(out).write_text(json.dumps({"triton": triton.__version__, "head_dim": D, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
