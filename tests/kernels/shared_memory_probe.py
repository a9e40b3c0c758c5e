"""Print, as JSON, the shared memory (bytes) each attention kernel needs on sm_90 at the given head dims.

    python tests/kernels/shared_memory_probe.py 128 320

Run without TRITON_INTERPRET (interpreted kernels cannot be compiled): the kernels are compiled for
sm_90 on this machine, no GPU needed, and the compiler's figure is read from the kernel's metadata.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels.linear_attn import triton as la  # noqa: E402
from kernels.window_attn import triton as wa  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
SCALARS = {"N": "i32", "H": "i32", "WINDOW": "i32", "eps": "fp32", "umax": "fp32"}
FP32_BUFFERS = {"C", "S", "DEN", "DDEN", "LSE", "DELTA", "DSC", "DC", "DY", "DX", "DQ", "DK_"}


def shared_bytes(fn, dtype: str, constexprs: dict, num_warps: int) -> int:
    signature = {name: "constexpr" if name in constexprs else SCALARS.get(name)
                 or ("*fp32" if name in FP32_BUFFERS else f"*{dtype}") for name in fn.arg_names}
    src = ASTSource(fn=fn, signature=signature, constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": 2})
    return compiled.metadata.shared


def kernels(dtype: str, d: int):
    """(op, kernel, constexprs, num_warps) for both attention ops, tiled as their launchers tile them."""
    q = torch.empty(1, 1, 1, d, dtype=DTYPES[dtype], device="meta")
    BK, BV, BT, prec, warps = la._cfg(q, q, 64)
    consts = dict(DK=d, DV=d, BT=BT, BK=BK, BV=BV, PREC=prec)
    for fn in (la._la_fwd_kernel, la._la_bwd_dq_kernel, la._la_bwd_dkv_kernel):
        yield "linear_attn", fn, consts, warps
    BD, BDV, bm, bn, prec = wa._cfg(d, d, DTYPES[dtype], 64, None, None)
    consts = dict(D=d, DV=d, BM=bm, BN=bn, BD=BD, BDV=BDV, PREC=prec)
    for fn in (wa._window_fwd_kernel, wa._window_bwd_dkv_kernel, wa._window_bwd_dq_kernel):
        yield "window_attn", fn, consts, 4


def main(head_dims: list[int]) -> None:
    warnings.simplefilter("ignore")
    out = [dict(op=op, kernel=fn.__name__, dtype=dtype, head_dim=d, shared=shared_bytes(fn, dtype, consts, warps))
           for d in head_dims for dtype in DTYPES for op, fn, consts, warps in kernels(dtype, d)]
    print(json.dumps(out))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]])
