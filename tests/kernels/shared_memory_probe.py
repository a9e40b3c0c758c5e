"""Print, as JSON, what each attention and Poincare kernel, tiled and launched as its launcher does, needs
on the chosen architectures at the given head dims: shared memory (bytes per block) against the
architecture's limit, registers per thread and register spill (bytes per thread on the stack).

    python tests/kernels/shared_memory_probe.py [--arch 80,89,90] [--floats fp64] [--aligned] [--poincare]
        [--bk-core] [--only KERNEL:DTYPE[,...]] [--cubin-for KERNEL:DTYPE:ARCH[,...]] [--jobs N] [--output FILE] 128 320

`--arch` takes compute capabilities from SHARED_MEMORY_PER_BLOCK_OPTIN (default 90, the H200). `--poincare`
adds the Poincare kernels to the attention ones, `--bk-core` the BK-Core kernels, the look-back's and the two-pass
scan's segment kernels (float32 only; they take the channel count at run time, so their rows agree across head
dims). `--floats fp64` types the float
scalar arguments (eps, umax, ...) as float64, as torch.compile's inductor passes Python floats to user Triton
kernels; the kernels must compile either way. `--aligned` compiles each kernel as a launch specialises it when
its tensors are 16-byte aligned (torch's allocations) and its int arguments multiples of 16 (N, H, WINDOW at
the benchmark's shapes): that lets loads vectorise, which moves registers and spill (at head dim 64 bf16 the
window backward's split kernels spill without it and not with it). `--cubin-for KERNEL:DTYPE:ARCH[,...]`
compiles only those kernels to a cubin; the others stop at PTX (ptxas is ~40 % of a compile), which gives their
shared memory and libdevice functions but no registers or spill (null in their rows). `--jobs` compiles that
many kernels at once (processes). `--output` writes the JSON to FILE instead of stdout. The JSON records the
command, the triton and torch versions, the launchers' sources (sha256) and the limits beside the per-kernel
rows, one row per (arch, head dim, dtype, kernel), each with its shared bytes, the arch's limit and whether they
fit.

Run without TRITON_INTERPRET (interpreted kernels cannot be compiled): the kernels are compiled for each
architecture on this machine, no GPU needed; shared memory is read from the kernel's metadata, registers and
spill from `cuobjdump -res-usage` of its cubin. Each kernel gets the num_warps and num_stages its launcher
passes, and Triton's defaults where it passes none.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels.backend import triton_interpreted  # noqa: E402
from kernels.bk_core import lookback as bk  # noqa: E402
from kernels.bk_core import triton as bk2  # noqa: E402
from kernels.linear_attn import triton as la  # noqa: E402
from kernels.poincare import triton as pc  # noqa: E402
from kernels.window_attn import triton as wa  # noqa: E402

#: the opt-in maximum of shared memory per block, in bytes, by compute capability: the most a kernel may ask
#: for, what torch.cuda.get_device_properties(dev).shared_memory_per_block_optin reads on a device, and what
#: Triton checks a kernel's shared memory against when it loads it (OutOfResources above it). From the CUDA
#: C++ Programming Guide, "Compute Capabilities", table "Technical Specifications per Compute Capability",
#: row "Maximum amount of shared memory per thread block": 163 KB on 8.0 (A100), 99 KB on 8.6 (A10, A40) and
#: 8.9 (L4, L40), 227 KB on 9.0 (H100, H200); KB = 1,024 bytes. 232,448 is also the figure the H200's
#: OutOfResources error states.
SHARED_MEMORY_PER_BLOCK_OPTIN = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
INTS = {"N": "i32", "H": "i32", "WINDOW": "i32", "PARTS": "i32", "HEAD_SLOTS": "i32", "R": "i32", "D": "i32"}
FLOATS = ("eps", "umax", "min_norm", "at_max", "den_min")
FP32_BUFFERS = {"C", "S", "DEN", "DDEN", "LSE", "DELTA", "KR", "DSC", "DC", "DX", "DXS", "DQ", "DK_", "ZT"}
#: argument types of an op's kernels that its names do not give by the rules above (BK-Core: C, S are counts)
ARG_TYPES = {
    "bk_core": {
        "C": "i32",
        "S": "i32",
        "L": "i32",
        "n_cblk": "i32",
        "STATE": "*i32",
        "FLAG": "*i32",
        "MAX_HALO": "i32",
        "LOG2_TOL": "fp32",
        "TOL2": "fp32",
    }  # fmt: skip
}


CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"  # shipped with triton


def compile_for(
    fn,
    dtype: str,
    constexprs: dict,
    launch: dict,
    floats: str,
    arch: int = 90,
    types: dict | None = None,
    aligned: bool = False,
):
    """The kernel compiled for sm_`arch` with the launch options `launch` (num_warps, num_stages; Triton's
    defaults for those absent), its arguments typed by the naming rules above and `types`, float buffers in
    `dtype` unless FP32_BUFFERS names them; `aligned`: as the JIT specialises 16-byte aligned pointers and ints
    that are multiples of 16."""
    scalars = INTS | dict.fromkeys(FLOATS, floats) | (types or {})
    signature = {
        name: "constexpr"
        if name in constexprs
        else scalars.get(name) or ("*fp32" if name in FP32_BUFFERS else f"*{dtype}")
        for name in fn.arg_names
    }
    attrs = {
        (i,): [["tt.divisibility", 16]]
        for i, t in enumerate(signature.values())
        if aligned and (t.startswith("*") or t == "i32")
    }
    consts = {(fn.arg_names.index(k),): v for k, v in constexprs.items()}
    src = ASTSource(fn=fn, signature=signature, constexprs=consts, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(launch))


def stage_hooks():
    """Triton's runtime knobs where they take a compile-stage hook (add_stages_inspection_hook), else None."""
    runtime = getattr(getattr(triton, "knobs", None), "runtime", None)
    return runtime if hasattr(runtime, "add_stages_inspection_hook") else None


@contextlib.contextmanager
def stopping_at_ptx():
    """Inside, triton.compile runs no ptxas: its cubin stage returns no binary (cached under a key of its own).
    Shared memory (set while lowering to LLVM IR) and the PTX are what a full compile gives. A Triton without
    the stage hook compiles fully."""
    runtime = stage_hooks()
    if runtime is None:
        yield
        return

    def hook(*args):
        if not args:  # asked for its part of the cache key
            return "-stop-at-ptx", ""
        stages = args[1]
        stages["cubin"] = lambda src, metadata: b""

    saved, runtime.add_stages_inspection_hook = runtime.add_stages_inspection_hook, hook
    try:
        yield
    finally:
        runtime.add_stages_inspection_hook = saved


def cuobjdump(compiled, flag: str) -> str:
    """cuobjdump `flag` (-res-usage, -sass) of a compiled kernel's cubin."""
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        return subprocess.run([str(CUOBJDUMP), flag, str(cubin)], capture_output=True, text=True, check=True).stdout


def resources(compiled) -> dict:
    """A kernel compiled by compile_for -> its shared memory (bytes per block), registers per thread and the bytes
    per thread ptxas spilled to the stack (local memory), from cuobjdump -res-usage of the cubin (None for both
    without one), and the libdevice functions inlined into its PTX (their exit labels)."""
    fields = dict(re.findall(r"(REG|STACK):(\d+)", cuobjdump(compiled, "-res-usage"))) if compiled.asm["cubin"] else {}
    return dict(
        num_warps=compiled.metadata.num_warps,
        num_stages=compiled.metadata.num_stages,
        shared=compiled.metadata.shared,
        registers=int(fields["REG"]) if fields else None,
        spill=int(fields["STACK"]) if fields else None,
        libdevice=sorted(set(re.findall(r"%(__nv_\w+?)\.exit", compiled.asm["ptx"]))),
    )


# The families below tile each kernel as its launcher does, the same for every arch: no launcher chooses its
# tiles from the device it runs on (test_shared_memory.py checks that the launchers read no device property).


def kernels(dtype: str, d: int, aligned: bool = False):
    """(op, kernel, constexprs, launch options) for both attention ops, as their launchers launch them:
    linear attention by its launch plan (la._launch_plan); window attention's forward by its _cfg tiles with
    wa._fwd_launch's options, and both kernels of its backward by wa._split_plan (`aligned`: for N a multiple of
    16, as the launch specialises them)."""
    q = torch.empty(1, 1, 1, d, dtype=DTYPES[dtype], device="meta")
    for fn, consts, launch in la._launch_plan(q, q, 64):
        yield "linear_attn", fn, consts, launch
    BD, BDV, bm, bn, prec = wa._cfg(d, d, DTYPES[dtype], 64, None, None, aligned)
    consts = dict(D=d, DV=d, BM=bm, BN=bn, BD=BD, BDV=BDV, PREC=prec, WIDE=wa._wide(64, bm, bn))
    yield "window_attn", wa._window_fwd_kernel, consts, wa._fwd_launch(BD, BDV, dtype == "fp32", aligned)
    for fn, consts, launch in wa._split_plan(d, d, DTYPES[dtype], 64, aligned=aligned):
        yield "window_attn", fn, consts, launch


def poincare_kernels(dtype: str, d: int, aligned: bool = False):
    """(op, kernel, constexprs, launch options) for the fused Poincare maps on rows of width d, with the rows
    per program and num_warps of their launchers (pc._blocks) and Triton's default num_stages."""
    block_r, block_d, warps = pc._blocks(d)
    for fn in (pc._rowmap_fwd_kernel, pc._rowmap_bwd_kernel):
        yield "poincare", fn, dict(LOG=True, BLOCK_R=block_r, BLOCK_D=block_d), dict(num_warps=warps)
    for fn in (pc._mobius_fwd_kernel, pc._mobius_bwd_kernel):
        yield "poincare", fn, dict(BLOCK_R=block_r, BLOCK_D=block_d), dict(num_warps=warps)


def bk_core_kernels(dtype: str, d: int, aligned: bool = False):
    """(op, kernel, constexprs, launch options) for the one-pass BK-Core sweep and adjoint, left to right, as
    bk.bk_core_lookback_fwd and _bwd launch them, and the two-pass scan's segment kernels, as bk2._sweep and
    _adjoint launch them at 64 channels: float32 only, BLOCK_C channels a program (one a thread) at every
    channel count (d plays no part)."""
    if dtype != "fp32":
        return
    launch = dict(num_warps=bk.BLOCK_C // 32)
    for fn, seg in ((bk._lookback_fwd_kernel, bk.SEG_FWD), (bk._lookback_bwd_kernel, bk.SEG_BWD)):
        yield "bk_core", fn, dict(REVERSE=False, L=seg, BLOCK_C=bk.BLOCK_C, LOOK=bk.LOOK), launch
    for fn in bk2.SEGMENT_KERNELS:  # the two-pass kernels as the halo kernels' fallback (gated)
        gated = {"GATED": True} if "GATED" in fn.arg_names else {}
        yield "bk_core", fn, dict(REVERSE=False, BLOCK_C=64) | gated, bk2._segment_launch(fn, 64)


#: (dtype, head dim, aligned) -> (op, kernel, constexprs, launch options) of each family; only the window
#: forward's and dq kernel's launches depend on `aligned` (their register caps, wa._fwd_launch, wa._dq_launch)
FAMILIES = {"attention": kernels, "poincare": poincare_kernels, "bk_core": bk_core_kernels}


def sources() -> dict[str, str]:
    """The probed launchers' files with the first 12 hex digits of their sha256: which code the rows describe."""
    files = (Path(m.__file__).resolve() for m in (la, wa, pc, bk, bk2))
    return {str(f.relative_to(ROOT)): hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in files}


def probe_one(task: tuple) -> dict:
    """One row: task = (arch, head dim, dtype, family, index of the kernel in the family, floats, aligned,
    whether to compile it to a cubin)."""
    arch, d, dtype, family, index, floats, aligned, cubin = task
    warnings.simplefilter("ignore")
    op, fn, consts, launch = list(FAMILIES[family](dtype, d, aligned))[index]
    with contextlib.nullcontext() if cubin else stopping_at_ptx():
        need = resources(compile_for(fn, dtype, consts, launch, floats, arch, ARG_TYPES.get(op), aligned))
    limit = SHARED_MEMORY_PER_BLOCK_OPTIN[arch]
    return dict(
        op=op,
        kernel=fn.__name__,
        dtype=dtype,
        head_dim=d,
        arch=arch,
        **{k: v for k, v in consts.items() if k != "PREC"},
        **need,
        maxnreg=launch.get("maxnreg"),
        shared_limit=limit,
        fits=need["shared"] <= limit,
    )


def keys(text: str) -> set[tuple[str, ...]]:
    """`A:B[:C],...` -> {(A, B[, C]), ...}."""
    return {tuple(k.split(":")) for k in text.split(",") if k}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("head_dims", nargs="+", type=int)
    parser.add_argument(
        "--arch",
        default="90",
        help=f"compute capabilities, comma-separated, of {', '.join(map(str, SHARED_MEMORY_PER_BLOCK_OPTIN))}",
    )
    parser.add_argument("--floats", default="fp32", choices=["fp32", "fp64"])
    parser.add_argument("--aligned", action="store_true", help="pointers and ints divisible by 16, as at launch")
    parser.add_argument("--poincare", action="store_true", help="the Poincare kernels too")
    parser.add_argument("--bk-core", action="store_true", help="the BK-Core kernels too")
    parser.add_argument(
        "--only", default="", help="KERNEL:DTYPE[,KERNEL:DTYPE...], e.g. _la_fwd_kernel:fp32 (compiling is slow)"
    )
    parser.add_argument(
        "--cubin-for",
        help="KERNEL:DTYPE:ARCH[,...]: only these get a cubin (registers, spill); the rest stop at PTX (default: all)",
    )
    parser.add_argument("--jobs", type=int, default=min(8, CPUS), help="compiles at once")
    parser.add_argument("--output", type=Path, help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    archs = [int(a) for a in args.arch.split(",")]
    if unknown := [a for a in archs if a not in SHARED_MEMORY_PER_BLOCK_OPTIN]:
        parser.error(f"--arch: no shared-memory limit for {unknown}; known: {list(SHARED_MEMORY_PER_BLOCK_OPTIN)}")
    if triton_interpreted():
        parser.error("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    before = sources()
    families = ["attention", *(["poincare"] if args.poincare else []), *(["bk_core"] if args.bk_core else [])]
    only = keys(args.only) if args.only else None
    cubin_for = None if args.cubin_for is None else keys(args.cubin_for)
    if cubin_for and (bad := sorted(":".join(k) for k in cubin_for if len(k) != 3 or not k[2].isdigit())):
        parser.error(f"--cubin-for: expected KERNEL:DTYPE:ARCH, got {', '.join(bad)}")
    tasks = [
        (
            arch,
            d,
            dtype,
            family,
            index,
            args.floats,
            args.aligned,
            cubin_for is None or (fn.__name__, dtype, str(arch)) in cubin_for,
        )
        for arch in archs
        for d in args.head_dims
        for dtype in DTYPES
        for family in families
        for index, (_, fn, _, _) in enumerate(FAMILIES[family](dtype, d))
        if only is None or (fn.__name__, dtype) in only
    ]
    if args.jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(min(args.jobs, len(tasks)), mp_context=get_context("spawn")) as pool:
            rows = list(pool.map(probe_one, tasks))
    else:
        rows = [probe_one(task) for task in tasks]
    if sources() != before:  # each compiling process imports the kernels anew
        sys.exit("shared_memory_probe: the kernel sources changed while they were compiled; run it again")
    out = dict(
        command=shlex.join(["python", "tests/kernels/shared_memory_probe.py", *argv]),
        triton=triton.__version__,
        torch=torch.__version__,
        floats=args.floats,
        stops_at_ptx=stage_hooks() is not None,
        aligned=args.aligned,
        sources=before,
        shared_memory_per_block_optin={str(a): SHARED_MEMORY_PER_BLOCK_OPTIN[a] for a in archs},
        kernels=rows,
    )
    text = json.dumps(out)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
