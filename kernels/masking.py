"""Entry masks a kernel can drop where it knows every entry of a step or tile is valid."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def keep(valid, new, old, MASKED: tl.constexpr):
    """new where valid, old elsewhere; new alone when MASKED is False (a step or tile whose entries are all valid:
    no select, and valid's own arithmetic is left to dead-code elimination)."""
    if MASKED:
        return tl.where(valid, new, old)
    else:
        return new
