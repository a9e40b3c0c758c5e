"""Static SASS loop bodies of the BK-Core and window-attention kernels, compiled for sm_90 on the CPU (no GPU).

    python results/kernels/sass-loops/loops.py --output results/kernels/sass-loops/loops-<commit>.json

Run from the root of the checkout to count: it imports that tree's kernels and takes their launch plans from
that tree's tests/kernels/shared_memory_probe.py (so an older commit's worktree counts as it launched), and
compiles through this checkout's probe (`compile_for`). Every loop is a backward branch in the SASS; its body
is the instructions from the branch target to the branch. BK-Core: the two-pass and look-back kernels, 64
channels, 2 warps, one 4-row step a body. Window attention: bf16 at head dim 64 as the probe compiles a launch
(`--aligned`), with each body's instructions per tile entry (body / entries a thread holds). These are
compile-time counts, not timings: they show where instructions went, not how fast a GPU runs them.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path.cwd()
TOOL = Path(__file__).resolve().parents[3] / "tests" / "kernels" / "shared_memory_probe.py"
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "kernels")]
warnings.simplefilter("ignore")

import shared_memory_probe as plans  # noqa: E402  (the counted tree's)
import triton  # noqa: E402


def _load_tool():
    """This checkout's probe, for compile_for (older trees' probes lack it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("probe_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = _load_tool()


def compiled_sass(compiled) -> list[tuple[int, str]]:
    """(address, instruction) of a kernel compiled by the probe's compile_for."""
    text = probe.cuobjdump(compiled, "-sass")
    return [(int(m[1], 16), m[2].strip()) for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", text)]


def sass(fn, constexprs: dict, launch: dict, dtype: str, types: dict | None = None) -> list[tuple[int, str]]:
    """(address, instruction) of fn compiled for sm_90 as the probe compiles a launch (--aligned)."""
    return compiled_sass(probe.compile_for(fn, dtype, constexprs, launch, "fp32", 90, types, aligned=True))


def per_tile_entry(found: list[dict], side: int, num_warps: int) -> list[dict]:
    """The loops, each with its body's instructions per tile entry (body / entries a thread holds)."""
    held = side / (num_warps * 32)
    for loop in found:
        loop["per_tile_entry"] = round(loop["instructions"] / held, 1)
    return found


def loops(ins: list[tuple[int, str]]) -> list[dict]:
    """Each backward branch's body: its length and its opcodes, commonest first."""
    out = []
    for addr, txt in ins:
        m = re.search(r"BRA 0x([0-9a-f]+)", txt)
        if m and int(m[1], 16) < addr:
            body = [t for a, t in ins if int(m[1], 16) <= a <= addr]
            ops = Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0] for t in body)
            out.append({"instructions": len(body), "opcodes": dict(ops.most_common())})
    return out


def bk_core_rows() -> list[dict]:
    import kernels.bk_core.lookback as lb
    import kernels.bk_core.triton as bt

    plans = [(getattr(bt, name), dict(REVERSE=False, BLOCK_C=64)) for name in
             ("_seg_map_kernel", "_sweep_kernel", "_adj_seg_kernel", "_adj_sweep_kernel")]  # fmt: skip
    plans += [
        (lb._lookback_fwd_kernel, dict(REVERSE=False, L=lb.SEG_FWD, BLOCK_C=64, LOOK=lb.LOOK)),
        (lb._lookback_bwd_kernel, dict(REVERSE=False, L=lb.SEG_BWD, BLOCK_C=64, LOOK=lb.LOOK)),
    ]
    types = probe.ARG_TYPES["bk_core"] | {"L": "i32", "n_cblk": "i32"}
    return [
        {"op": "bk_core", "kernel": fn.__name__, "loops": loops(sass(fn, consts, {"num_warps": 2}, "fp32", types))}
        for fn, consts in plans
    ]


def window_rows() -> list[dict]:
    rows = []
    for op, fn, consts, launch in plans.kernels("bf16", 64):
        if op != "window_attn":
            continue
        side = consts.get("BM", consts.get("BQ")) * consts.get("BN", consts.get("BK"))
        found = per_tile_entry(loops(sass(fn, consts, launch, "bf16")), side, launch["num_warps"])
        tiles = {k: v for k, v in consts.items() if k in ("BM", "BN", "BQ", "BK", "WIDE")}
        rows.append({"op": "window_attn", "kernel": fn.__name__, **tiles, **launch, "loops": found})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    rows = bk_core_rows() + window_rows()
    for r in rows:
        print(r["kernel"], [loop["instructions"] for loop in r["loops"]])
    report = {"command": " ".join(["python", *sys.argv]), "commit": commit, "triton": triton.__version__, "rows": rows}
    args.output.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
