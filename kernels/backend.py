"""Choose between a Triton kernel and its PyTorch reference.

`PHASEBENCH_KERNELS` (or :func:`set_backend`) selects: `auto` (Triton on CUDA tensors, reference
otherwise), `triton` (Triton wherever it can run: CUDA, or CPU under `TRITON_INTERPRET=1`) or `torch`
(always the reference).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

BACKENDS = ("auto", "triton", "torch")
_override: str | None = None


def current_backend() -> str:
    name = _override or os.environ.get("PHASEBENCH_KERNELS", "auto")
    if name not in BACKENDS:
        raise ValueError(f"PHASEBENCH_KERNELS: {name!r} is not one of {', '.join(BACKENDS)}")
    return name


def set_backend(name: str | None) -> None:
    """Force a backend for this process (None returns to the environment's choice)."""
    global _override
    if name is not None and name not in BACKENDS:
        raise ValueError(f"kernel backend: {name!r} is not one of {', '.join(BACKENDS)}")
    _override = name


@contextmanager
def backend(name: str):
    """Context manager form of :func:`set_backend`."""
    previous = _override
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


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
