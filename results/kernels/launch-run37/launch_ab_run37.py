"""Run 37 (thirty-second session): every op's eager fwd+bwd with its Triton kernels launched through the JIT
(kernels.launch.DIRECT off) and directly (on, as landed), interleaved in one process, 3 rounds, median; and the
host's microseconds of one call each way (the device drained before each call). Inputs are bench/kernels.py's
cases (anchors skipped); BK-Core's row gives its share of copy bandwidth by the 32 bytes an element the target
counts.

    python3 launch_ab_run37.py OUT.json
"""

import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "results" / "kernels" / "bk-launch-run36"))

from bk_launch_run36 import call_host_us  # noqa: E402

import bench.kernels as BK  # noqa: E402
from kernels import launch as L  # noqa: E402

CASES = [("bk_core", 16384), ("bk_core", 2048), ("window_attn", 2048), ("window_attn", 16384),
         ("linear_attn", 4096), ("scan", 2048), ("poincare_exp0", 2048), ("poincare_mobius_add", 2048)]  # fmt: skip


def main(out):
    BK.SKIP_ANCHORS = frozenset({"fla", "flex", "sdpa", "accelerated", "score_mod"})
    bw = BK.copy_bandwidth("cuda", False)
    rows = []
    print(f"copy bandwidth {bw / 1e9:.0f} GB/s")
    print(f"{'op':22} {'N':>6} {'jit ms':>8} {'direct ms':>9} {'ratio':>6} {'jit host us':>11} {'direct host us':>14}")
    for op, n in CASES:
        shape, impls, _, inputs, *_ = BK.CASES[op](n, "cuda", BK.DTYPES[op], False)
        run = BK._fwd_bwd(impls["triton"], inputs)
        ms, host = {True: [], False: []}, {}
        for direct in (False, True):
            L.DIRECT = direct
            host[direct] = call_host_us(run, n=20)
        for _ in range(3):
            for direct in (False, True):
                L.DIRECT = direct
                ms[direct].append(BK.time_fn(run, "cuda", graph=False)["median_ms"])
        L.DIRECT = True
        jit, dct = statistics.median(ms[False]), statistics.median(ms[True])
        row = {"op": op, "N": n, "shape": shape, "jit_ms": ms[False], "direct_ms": ms[True],
               "jit_host_us": host[False], "direct_host_us": host[True]}  # fmt: skip
        if op == "bk_core":
            numel = inputs[0].numel()
            row["frac_of_copy_bw"] = {k: 32 * numel / (t * 1e-3) / bw for k, t in (("jit", jit), ("direct", dct))}
        rows.append(row)
        extra = ""
        if "frac_of_copy_bw" in row:
            extra = "  ({:.1%} / {:.1%} of copy bandwidth)".format(*row["frac_of_copy_bw"].values())
        cells = f"{jit:>8.4f} {dct:>9.4f} {dct / jit:>6.3f} {host[False]:>11.0f} {host[True]:>14.0f}"
        print(f"{op:22} {n:>6} {cells}{extra}")
        sys.stdout.flush()
        del run, inputs, impls
        torch.cuda.empty_cache()
    Path(out).write_text(json.dumps({"environment": BK.environment(sys.argv, "cuda"), "copy_bandwidth_Bps": bw,
                                     "rows": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
