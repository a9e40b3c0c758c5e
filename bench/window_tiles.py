"""Time the window attention's two launches under tile and launch choices, replayed from CUDA graphs: the
measurements behind `_cfg`, `_fwd_launch` and `_bwd_launch` in kernels/window_attn/triton.py.

    python bench/window_tiles.py --sizes 2048,16384 --out results/kernels/window_tiles_h200

For each N, every forward choice (BM queries x BN keys, warps, stages) times the forward op alone and every
backward choice (BQ queries x BK keys, warps, stages) the backward op alone, on (B, H, N, D) bf16 inputs,
window 64. A choice that fails to compile or launch (shared memory) is recorded with its error. Prints a
table per N, fastest first; writes OUT.json (rows, environment, command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

FWD_TILES = [(64, 64), (128, 64), (64, 32), (128, 128)]
BWD_TILES = [(16, 32), (32, 32), (16, 64), (32, 64), (64, 64)]
LAUNCHES = [(4, 1), (4, 2), (8, 1), (8, 2)]


def inputs(n, B=8, H=16, D=64, dtype=torch.bfloat16):
    """Ball points x, y, values v, per-head c and scale, as the public function hands them to the ops."""
    from kernels.poincare.triton import exp0_triton

    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(B, H, n, D, device="cuda", generator=g) * 0.7 / D**0.5 for _ in range(2))
    c = torch.rand(H, device="cuda", generator=g) + 0.2
    x, y = (exp0_triton(t.to(dtype), c.view(1, H, 1, 1)).contiguous() for t in (q, k))
    v = torch.randn(B, H, n, D, device="cuda", generator=g).to(dtype)
    return x, y, v, c, torch.rand(H, device="cuda", generator=g) + 0.5


def time_choice(wt, kind, tiles, launch, args):
    """Median ms of the op `kind` with these tiles and (warps, stages), from a CUDA graph; or the error."""
    import triton.testing

    name = "_fwd_launch" if kind == "fwd" else "_bwd_launch"
    default = getattr(wt, name)
    setattr(wt, name, lambda BD, BDV: dict(num_warps=launch[0], num_stages=launch[1]))
    try:
        if kind == "fwd":
            x, y, v, c, s = args
            fn = lambda: wt._launch_fwd(x, y, v, c, s, 64, *tiles)  # noqa: E731
        else:
            fn = lambda: wt._launch_bwd(*args, 64, *tiles)  # noqa: E731
        fn()
        torch.cuda.synchronize()
        return {"ms": triton.testing.do_bench_cudagraph(fn, rep=50)}
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    finally:
        setattr(wt, name, default)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="2048,16384")
    p.add_argument("--out", type=Path, default=ROOT / "results/kernels/window_tiles")
    args = p.parse_args(argv)
    from kernels.window_attn import triton as wt

    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        x, y, v, c, s = inputs(n)
        o, lse = wt._launch_fwd(x, y, v, c, s, 64, None, None)
        do = torch.randn_like(o)
        bwd_args = (do, o, x, y, v, c, s, lse)
        for kind, tiles_list, a in (("fwd", FWD_TILES, (x, y, v, c, s)), ("bwd", BWD_TILES, bwd_args)):
            for tiles in tiles_list:
                for launch in LAUNCHES:
                    t0 = time.perf_counter()
                    r = time_choice(wt, kind, tiles, launch, a)
                    rows.append({"N": n, "kind": kind, "tiles": tiles, "warps": launch[0], "stages": launch[1]} | r)
                    print(f"[{time.perf_counter() - t0:5.1f} s] {rows[-1]}", file=sys.stderr, flush=True)
                    write(args.out, rows)  # a run stopped by its time limit keeps what it measured
        for kind in ("fwd", "bwd"):
            print(f"N={n} {kind}: tiles warps stages ms (fastest first)")
            mine = [r for r in rows if r["N"] == n and r["kind"] == kind]
            for r in sorted(mine, key=lambda r: r.get("ms", float("inf"))):
                print(f"  {r['tiles']!s:>10} {r['warps']:>2} {r['stages']:>2} {r.get('ms', r.get('error')):>10}")
    write(args.out, rows)


def write(out: Path, rows: list[dict]) -> None:
    """OUT.json: this command, the rows so far and the machine."""
    from orchestrator.environment import collect

    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join([sys.executable, *sys.argv]), "rows": rows, "environment": collect("cuda")}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
