"""Print, as JSON, what each attention and Poincare kernel, tiled as its launcher tiles it, needs on sm_90
at the given head dims: shared memory (bytes per block), registers per thread and register spill (bytes
per thread on the stack).

    python tests/kernels/shared_memory_probe.py [--floats fp64] [--poincare] [--only KERNEL:DTYPE] 128 320

`--poincare` adds the Poincare kernels to the attention ones. `--floats fp64` types the float scalar
arguments (eps, umax, ...) as float64, as torch.compile's inductor passes Python floats to user Triton
kernels; the kernels must compile either way.

Run without TRITON_INTERPRET (interpreted kernels cannot be compiled): the kernels are compiled for
sm_90 on this machine, no GPU needed; shared memory is read from the kernel's metadata, registers and
spill from `cuobjdump -res-usage` of its cubin.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels.linear_attn import triton as la  # noqa: E402
from kernels.poincare import triton as pc  # noqa: E402
from kernels.window_attn import triton as wa  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
INTS = {"N": "i32", "H": "i32", "WINDOW": "i32", "R": "i32", "D": "i32"}
FLOATS = ("eps", "umax", "min_norm", "at_max", "den_min")
FP32_BUFFERS = {"C", "S", "DEN", "DDEN", "LSE", "DELTA", "DSC", "DC", "DY", "DX", "DQ", "DK_", "ZT"}


CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"  # shipped with triton


def resources(fn, dtype: str, constexprs: dict, num_warps: int, floats: str) -> dict:
    """The compiled kernel's shared memory (bytes per block), registers per thread and the bytes per thread
    ptxas spilled to the stack (local memory): cuobjdump -res-usage of the sm_90 cubin."""
    scalars = INTS | dict.fromkeys(FLOATS, floats)
    signature = {
        name: "constexpr"
        if name in constexprs
        else scalars.get(name) or ("*fp32" if name in FP32_BUFFERS else f"*{dtype}")
        for name in fn.arg_names
    }
    src = ASTSource(fn=fn, signature=signature, constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": 2})
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run(
            [str(CUOBJDUMP), "-res-usage", str(cubin)], capture_output=True, text=True, check=True
        ).stdout
    fields = dict(re.findall(r"(REG|STACK):(\d+)", usage))
    return dict(shared=compiled.metadata.shared, registers=int(fields["REG"]), spill=int(fields["STACK"]))


def kernels(dtype: str, d: int):
    """(op, kernel, constexprs, num_warps) for both attention ops, tiled as their launchers tile them."""
    q = torch.empty(1, 1, 1, d, dtype=DTYPES[dtype], device="meta")
    BK, BV, BT, prec, warps = la._cfg(q, q, 64)
    consts = dict(DK=d, DV=d, BT=BT, BK=BK, BV=BV, PREC=prec)
    for fn in (
        la._la_fwd_kernel,
        la._la_bwd_dq_kernel,
        la._la_bwd_dkv_kernel,
        la._la_bwd_states_kernel,
        la._la_bwd_chunk_kernel,
    ):
        yield "linear_attn", fn, consts, warps
    for fn, backward in (
        (wa._window_fwd_kernel, False),
        (wa._window_bwd_dkv_kernel, True),
        (wa._window_bwd_dq_kernel, True),
    ):
        BD, BDV, bm, bn, prec = wa._cfg(d, d, DTYPES[dtype], 64, None, None, backward=backward)
        yield "window_attn", fn, dict(D=d, DV=d, BM=bm, BN=bn, BD=BD, BDV=BDV, PREC=prec), 4


def poincare_kernels(dtype: str, d: int):
    """(op, kernel, constexprs, num_warps) for the fused Poincare maps on rows of width d."""
    block_d = triton.next_power_of_2(d)
    for fn in (pc._rowmap_fwd_kernel, pc._rowmap_bwd_kernel):
        yield "poincare", fn, dict(LOG=True, BLOCK_R=4, BLOCK_D=block_d), 4
    for fn in (pc._mobius_fwd_kernel, pc._mobius_bwd_kernel):
        yield "poincare", fn, dict(BLOCK_R=4, BLOCK_D=block_d), 4


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("head_dims", nargs="+", type=int)
    parser.add_argument("--floats", default="fp32", choices=["fp32", "fp64"])
    parser.add_argument("--poincare", action="store_true", help="the Poincare kernels too")
    parser.add_argument("--only", default="", help="KERNEL:DTYPE, e.g. _la_fwd_kernel:fp32 (compiling is slow)")
    args = parser.parse_args(argv)
    families = [kernels, poincare_kernels] if args.poincare else [kernels]
    only = tuple(args.only.split(":")) if args.only else None
    warnings.simplefilter("ignore")
    out = [
        dict(
            op=op,
            kernel=fn.__name__,
            dtype=dtype,
            head_dim=d,
            num_warps=warps,
            **{k: v for k, v in consts.items() if k != "PREC"},
            **resources(fn, dtype, consts, warps, args.floats),
        )
        for d in args.head_dims
        for dtype in DTYPES
        for family in families
        for op, fn, consts, warps in family(dtype, d)
        if only in (None, (fn.__name__, dtype))
    ]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
