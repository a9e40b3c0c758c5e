"""Choose between a Triton kernel and its PyTorch reference.

The caller owns the choice: inside `with backend(name):` the ops take `auto` (Triton on CUDA tensors,
reference otherwise), `triton` (Triton wherever it can run: CUDA, or CPU under `TRITON_INTERPRET=1`) or
`torch` (always the reference); outside any such block, `PHASEBENCH_KERNELS` (default `auto`). A job enters
the block for its whole run (`orchestrator.measure.Job.execute`), so no run's choice outlives it.

The choice lives in this module, not in a context variable, on purpose: autograd runs a CUDA backward,
and with it the recomputed forward of a checkpointed block, on its own device threads, which a context
variable would not reach; the recomputation must take the same kernels as the forward. Not thread-safe:
one job at a time per process (a Ray worker runs one task at a time).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the first kernel, not with this module (spec validation reads BACKENDS)
    import torch

BACKENDS = ("auto", "triton", "torch")
_override: str | None = None


def current_backend() -> str:
    name = _override or os.environ.get("PHASEBENCH_KERNELS", "auto")
    if name not in BACKENDS:
        raise ValueError(f"PHASEBENCH_KERNELS: {name!r} is not one of {', '.join(BACKENDS)}")
    return name


@contextmanager
def backend(name: str | None) -> Iterator[None]:
    """Inside the block the ops take backend `name` (None: the environment's choice); the previous choice
    returns when it ends."""
    global _override
    if name is not None and name not in BACKENDS:
        raise ValueError(f"kernel backend: {name!r} is not one of {', '.join(BACKENDS)}")
    previous, _override = _override, name
    try:
        yield
    finally:
        _override = previous


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(x: torch.Tensor) -> bool:
    """True when the op on tensor `x` should run its Triton kernel."""
    name = current_backend()
    if name == "torch":
        return False
    if x.is_cuda:
        return True
    return name == "triton" and triton_interpreted()


#: largest head dimension the attention kernels take: they hold a whole head in one tile, and above this
#: the tiles exceed the H200's 227 KiB of shared memory per block (head dim 160 needed 228 KiB, 320 needed
#: 340 KiB); larger heads take the PyTorch reference
ATTENTION_MAX_HEAD_DIM = 128


def use_triton_attention(q: torch.Tensor, v: torch.Tensor) -> bool:
    """:func:`use_triton` for an attention kernel over q: (..., Dk) and v: (..., Dv), within the head-dim limit."""
    return use_triton(q) and max(q.shape[-1], v.shape[-1]) <= ATTENTION_MAX_HEAD_DIM
