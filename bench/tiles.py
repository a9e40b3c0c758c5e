"""Time an attention op's launches under tile and launch choices, replayed from CUDA graphs: the measurements
behind its launcher's choices.

    python bench/tiles.py --op window_attn --sizes 2048,16384 --out results/kernels/window_tiles_h200
    python bench/tiles.py --op window_attn --head-dim 128 --sizes 2048,16384 --out results/kernels/window_tiles_d128
    python bench/tiles.py --op linear_attn --sizes 4096,16384 --out results/kernels/la_tiles_h200
    python bench/tiles.py --op bk_core --sizes 2048,16384 --out results/kernels/bk_core_tiles_h200

window_attn, (8, 16, N, D) bf16, window 64, D 64 unless --head-dim says (16 to 128): every forward choice (BM
queries x BM keys, warps, stages) times the forward launch alone (kernels/window_attn/triton.py: `_cfg`,
`_fwd_launch`); the kinds split_dkdv and split_dq time the whole backward (both kernels, exp0's backward in their
epilogues) with one kernel's tiles and launch varied (`_split_tiles`, `_dkdv_launch`, `_dq_launch`; each
launcher's other options kept), and the kind regs with one kernel's registers capped (maxnreg; `FWD_MAXNREG`,
`DQ_MAXNREG`): the forward timed alone, a backward kernel in the whole backward.

linear_attn, (8, 16, N, 128) bf16: the chunk-parallel backward (`_launch_bwd_chunked`) under its chunk length
and, one kernel at a time with the others as `_chunked_cfg` has them, each kernel's tiles, warps and stages.

bk_core, (16, N, 64) float32: the one-pass look-back's forward and adjoint kernels, each under its rows a
program, predecessors a look-back round and channels a program (kernels/bk_core/lookback.py: `SEG_FWD`,
`SEG_BWD`, `LOOK`, `BLOCK_C`).

A choice that fails to compile or launch (shared memory) is recorded with its error. Prints a table per N
and kind, fastest first; writes OUT.json (rows, environment, command) after every choice, so a run stopped
by its time limit keeps what it measured. `--kinds` times only the kinds named (a launch that faults leaves the
process's CUDA context unusable: time a suspect kind in a process of its own). CUDA only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

LAUNCHES = [(4, 1), (4, 2), (8, 1), (8, 2)]
#: the folded kernels work best with the fold's side tile no wider than the other and both within the window:
#: forward BN <= BM, dq BK <= BQ, dk/dv BQ <= BK (kernels/window_attn/triton.py: `_fold`)
WINDOW_FWD_TILES = [(64, 64), (64, 32), (32, 32), (64, 16), (32, 16)]
#: the backward's kernels (BQ queries x BK keys), each varied with the other at _split_tiles' choice
WINDOW_SPLIT_TILES = {
    "split_dkdv": [(32, 32), (16, 64), (16, 32), (32, 64)],
    "split_dq": [(32, 32), (64, 16), (64, 32), (32, 16)],
}
WINDOW_SPLIT_KERNELS = {"split_dkdv": (0, "_dkdv_launch"), "split_dq": (1, "_dq_launch")}
#: register caps (maxnreg) the kind regs tries on each window kernel at its launcher's tiles; None: uncapped
WINDOW_REG_CAPS = [None, 128, 144, 160, 168, 184, 200]
#: the kernels the kind regs caps, by their launchers
WINDOW_REG_LAUNCHERS = {"fwd": "_fwd_launch", "split_dkdv": "_dkdv_launch", "split_dq": "_dq_launch"}
#: linear attention's chunked backward, per kernel: the tile constexprs each choice sets
LA_TILES = {
    "_la_bwd_states_kernel": [{"BV": bv} for bv in (32, 64, 128)],
    "_la_bwd_chunk_kernel": [{"BK": bk, "BV": bv} for bk, bv in ((32, 32), (64, 32), (64, 64), (128, 32))],
    # key tiles narrower than the head (64 of 128) faulted on the H200 (illegal address, run 11): timed last
    "_la_bwd_chunk_dv_kernel": [{"BK": bk, "BV": bv} for bk, bv in ((128, 64), (128, 32), (64, 64), (64, 32))],
}
LA_CHUNKS = [32, 64]
#: the one-pass BK-Core's (rows a program, predecessors a look-back round, channels a program), forward and
#: adjoint kernels; the first of each is lookback.py's (SEG_FWD or SEG_BWD, LOOK, BLOCK_C)
BK_FWD = [(128, 1, 64), (64, 1, 64), (32, 1, 64), (128, 4, 64), (64, 4, 64), (64, 8, 64), (256, 1, 64), (256, 4, 64)]
BK_BWD = [(64, 1, 64), (32, 1, 64), (64, 4, 64), (32, 4, 64), (32, 8, 64), (128, 1, 64), (128, 4, 64)]


def _graph_ms(fn) -> dict:
    """{"ms": median of CUDA-graph replays of fn} or {"error": ...} when it fails to compile or launch."""
    import triton.testing

    try:
        fn()
        torch.cuda.synchronize()
        return {"ms": triton.testing.do_bench_cudagraph(fn, rep=50)}
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {str(e)[:200]}"}


@contextlib.contextmanager
def swapped(module, name, value):
    """module.name is `value` inside the block (a launcher's choice, while one launch compiles and runs)."""
    default = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, default)


def _randn(*shape, g, scale=1.0, dtype=torch.bfloat16):
    return (torch.randn(*shape, device=g.device, generator=g) * scale).to(dtype)


# ------------------------------------------------------------------------------------------ window attention
def window_choices(n, device="cuda", B=8, H=16, D=64):
    """(kind, choice, fn) for every window choice at (B, H, n, D); fn() launches it once."""
    from kernels.window_attn import triton as wt

    g = torch.Generator(device=device).manual_seed(0)
    c = torch.rand(H, device=device, generator=g) + 0.2
    q, k = (_randn(B, H, n, D, g=g, scale=0.7 / D**0.5) for _ in range(2))
    v, s = _randn(B, H, n, D, g=g), torch.rand(H, device=device, generator=g) + 0.5
    o, lse, x = wt._launch_fwd(q, k, v, c, s, 64, None, None)
    do = torch.randn_like(o)

    def patched(name, adjust, call):
        """call() with the options of launcher `name` passed through adjust (its other options kept)."""
        default = getattr(wt, name)

        def fn():
            with swapped(wt, name, lambda *a: adjust(default(*a))):
                return call()

        return fn

    def launched(launch):
        return lambda options: options | dict(num_warps=launch[0], num_stages=launch[1])

    def capped(cap):
        return lambda options: {k: v for k, v in options.items() if k != "maxnreg"} | ({"maxnreg": cap} if cap else {})

    for tiles in WINDOW_FWD_TILES:
        for launch in LAUNCHES:
            call = lambda t=tiles: wt._launch_fwd(q, k, v, c, s, 64, *t)  # noqa: E731
            choice = {"tiles": tiles, "warps": launch[0], "stages": launch[1]}
            yield "fwd", choice, patched("_fwd_launch", launched(launch), call)

    def backward():
        return wt._launch_bwd(do, o, q, k, x, v, c, s, lse, 64, None, None)

    def split(kernel, tiles, launch):
        """The whole backward with one of its kernels' tiles and launch replaced."""
        index, launcher = WINDOW_SPLIT_KERNELS[kernel]
        default = wt._split_tiles

        def with_tiles(BD, BDV, fp32, aligned=True):
            return tuple(tiles if i == index else t for i, t in enumerate(default(BD, BDV, fp32, aligned)))

        fn = patched(launcher, launched(launch), backward)

        def run():
            with swapped(wt, "_split_tiles", with_tiles):
                return fn()

        return run

    for kernel in WINDOW_SPLIT_KERNELS:
        for tiles in WINDOW_SPLIT_TILES[kernel]:
            for launch in LAUNCHES:
                yield kernel, {"tiles": tiles, "warps": launch[0], "stages": launch[1]}, split(kernel, tiles, launch)

    def forward():
        return wt._launch_fwd(q, k, v, c, s, 64, None, None)

    for kernel, launcher in WINDOW_REG_LAUNCHERS.items():
        for cap in WINDOW_REG_CAPS:
            call = forward if kernel == "fwd" else backward
            yield "regs", {"kernel": kernel, "maxnreg": cap}, patched(launcher, capped(cap), call)


# ------------------------------------------------------------------------------------------ linear attention
def linear_attn_choices(n, device="cuda", B=8, H=16):
    """(kind, choice, fn) for every chunked-backward choice at N = n; kind is the kernel varied (or "chunk");
    fn() launches it once."""
    from kernels.linear_attn import triton as la
    from kernels.row_dot import row_dot

    D = 128
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (_randn(B, H, n, D, g=g) for _ in range(3))
    o, den = la._launch_fwd(q, k, v, 1e-6, 64)
    do = torch.randn_like(o)
    dden = row_dot(do, o, den)
    default_cfg = la._chunked_cfg

    def with_cfg(chunk, kernel=None, consts=None, launch=None):
        def cfg(q_, v_, _chunk):
            tiles = default_cfg(q_, v_, chunk)
            if kernel:
                c, opts = tiles[kernel]
                tiles[kernel] = (c | consts, dict(num_warps=launch[0], num_stages=launch[1]))
            return tiles

        def fn():
            with swapped(la, "_chunked_cfg", cfg):
                return la._launch_bwd_chunked(q, k, v, do, den, dden, chunk)

        return fn

    for chunk in LA_CHUNKS:
        yield "chunk", {"chunk": chunk}, with_cfg(chunk)
    for kernel, choices in LA_TILES.items():
        for consts in choices:
            for launch in LAUNCHES + [(4, 3)]:
                choice = consts | {"warps": launch[0], "stages": launch[1]}
                yield kernel, choice, with_cfg(64, kernel, consts, launch)


# ------------------------------------------------------------------------------------------ BK-Core look-back
def bk_core_choices(n, device="cuda", B=16, H=2):
    """(kind, choice, fn) for the one-pass BK-Core (kernels/bk_core/lookback.py) at (B, n, 32 H) float32: one
    causal sweep ("fwd") and its adjoint ("bwd") under each plan of BK_FWD, BK_BWD (segment length, look-back
    width, channels a program)."""
    from kernels.bk_core import lookback as lb

    C = 32 * H
    g = torch.Generator(device=device).manual_seed(0)
    v = torch.randn(B, n, C, device=device, generator=g)
    h0 = torch.randn(C, device=device, generator=g) * 0.1
    beta, z_im = (torch.rand(C, device=device, generator=g) + 0.5 for _ in range(2))
    z_re = torch.zeros(C, device=device)
    g_re, g_im = lb.bk_core_lookback_fwd(v, h0, beta, z_re, z_im, False)
    dg_re, dg_im = torch.randn(2, B, n, C, device=device, generator=g)

    def with_plan(seg_name, plan, call):
        seg, look, block_c = plan

        def fn():
            with swapped(lb, seg_name, seg), swapped(lb, "LOOK", look), swapped(lb, "BLOCK_C", block_c):
                return call()

        return fn

    def choice(plan):
        return dict(zip(("rows", "look", "channels"), plan, strict=True))

    for plan in BK_FWD:
        call = lambda: lb.bk_core_lookback_fwd(v, h0, beta, z_re, z_im, False)  # noqa: E731
        yield "fwd", choice(plan), with_plan("SEG_FWD", plan, call)
    for plan in BK_BWD:
        call = lambda: lb.bk_core_lookback_bwd(g_re, g_im, dg_re, dg_im, beta, False)  # noqa: E731
        yield "bwd", choice(plan), with_plan("SEG_BWD", plan, call)


CHOICES = {"window_attn": window_choices, "linear_attn": linear_attn_choices, "bk_core": bk_core_choices}
#: the kinds each op's choices come in (what --kinds may name)
KINDS = {
    "window_attn": ("fwd", *WINDOW_SPLIT_KERNELS, "regs"),
    "linear_attn": ("chunk", *LA_TILES),
    "bk_core": ("fwd", "bwd"),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--op", choices=sorted(CHOICES), default="window_attn")
    p.add_argument("--sizes", default="2048,16384")
    p.add_argument("--out", type=Path, default=None, help="OUT.json (default results/kernels/<op>_tiles)")
    p.add_argument("--kinds", default="", help="comma-separated kinds to time (default all): fwd, bwd, chunk, a kernel")
    p.add_argument("--head-dim", type=int, default=64, help="window_attn's head dim, 16 to 128 (default 64)")
    args = p.parse_args(argv)
    if args.head_dim != 64 and args.op != "window_attn":
        p.error(f"--head-dim: only window_attn takes a head dim, not {args.op}")
    if not 16 <= args.head_dim <= 128:
        p.error(f"--head-dim: {args.head_dim} is outside 16 to 128")
    kinds = set(filter(None, args.kinds.split(",")))
    if kinds - set(KINDS[args.op]):
        unknown = ", ".join(sorted(kinds - set(KINDS[args.op])))
        p.error(f"--kinds: {unknown} not a kind of {args.op} (one of {', '.join(KINDS[args.op])})")
    out = args.out or ROOT / f"results/kernels/{args.op}_tiles"
    rows = []
    options = {"D": args.head_dim} if args.op == "window_attn" else {}
    for n in [int(s) for s in args.sizes.split(",")]:
        for kind, choice, fn in CHOICES[args.op](n, **options):
            if kinds and kind not in kinds:
                continue
            t0 = time.perf_counter()
            rows.append({"N": n, "kind": kind} | choice | _graph_ms(fn))
            print(f"[{time.perf_counter() - t0:5.1f} s] {rows[-1]}", file=sys.stderr, flush=True)
            write(out, rows)
        for kind in dict.fromkeys(r["kind"] for r in rows if r["N"] == n):
            print(f"N={n} {kind}: fastest first")
            mine = [r for r in rows if r["N"] == n and r["kind"] == kind]
            for r in sorted(mine, key=lambda r: r.get("ms", float("inf"))):
                choice = {k: v for k, v in r.items() if k not in ("N", "kind", "ms", "error")}
                print(f"  {choice}  {r['ms']:.4f} ms" if "ms" in r else f"  {choice}  {r['error']}")


def write(out: Path, rows: list[dict]) -> None:
    """OUT.json: this command, the rows so far and the machine."""
    from orchestrator.environment import collect

    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join([sys.executable, *sys.argv]), "rows": rows, "environment": collect("cuda")}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
