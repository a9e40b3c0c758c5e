"""Float32 math by the hardware's approximations, for per-element chains where the exact libdevice routine costs
more than the kernel can afford. Under the Triton interpreter (no libdevice, no PTX) each is the exact op."""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra import libdevice

from kernels.backend import triton_interpreted

#: read when a kernel module is imported, as TRITON_INTERPRET is
INTERPRETED: tl.constexpr = tl.constexpr(triton_interpreted())


@triton.jit
def log2_approx(x):
    """log2 by lg2.approx (one MUFU op, ~2^-22 absolute error on [1, 2)), where float32 tl.math.log2 inlines
    libdevice's exact __nv_log2f: ~30 instructions with a branch."""
    if INTERPRETED:
        return tl.math.log2(x)
    else:
        return libdevice.fast_log2f(x)


@triton.jit
def rcp_approx(x):
    """1/x by rcp.approx.ftz.f32 (one MUFU op, ~1 ulp; denormals flush to zero), where 1.0 / x compiles to
    div.full.f32: the same MUFU op behind range checks for huge and denormal x (six more instructions)."""
    if INTERPRETED:
        return 1.0 / x
    else:
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True,
                                         pack=1)  # fmt: skip


@triton.jit
def tanh_approx(x):
    """tanh by tanh.approx.f32 (one MUFU op, ~2^-11 relative error), where libdevice's tanhf takes ~20
    instructions."""
    if INTERPRETED:
        t = tl.exp(-2.0 * tl.abs(x))
        return tl.where(x < 0, -1.0, 1.0) * (1.0 - t) / (1.0 + t)
    else:
        return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True,
                                         pack=1)  # fmt: skip
