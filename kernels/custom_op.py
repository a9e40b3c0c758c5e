"""A kernel's forward and backward custom ops joined by autograd, with an eager path that skips the dispatcher.

`differentiable_op(fwd_op, bwd_op, setup_context, backward)` registers `backward` as `fwd_op`'s autograd formula
and returns the callable the public functions use:
- while torch.compile (or torch.export) traces it, the call is `fwd_op` itself, so the graph holds one opaque
  op whose backward calls `bwd_op` (fake implementations give the shapes);
- in eager mode, the call is a `torch.autograd.Function` over the same two implementations (the undecorated
  functions behind `fwd_op` and `bwd_op`), the same `setup_context` and the same `backward`. A custom op's
  Python dispatch costs the host ~40 us a call on the CPU VM (`bench/host_ops.py`, launches skipped: a BK-Core
  forward and backward took 189 us through the ops, 109 us through the Function; results/kernels/host-ops/);
  CUDA-graph replays never pay it, eager calls did.

`backward(ctx, bwd, *grads)` takes the backward to call as `bwd`: `bwd_op` when traced, its implementation in
eager mode. Double backward is not supported on either path (bwd_op has no autograd formula; the eager
Function is once-differentiable).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.function import once_differentiable

__all__ = ["differentiable_op"]


def differentiable_op(fwd_op, bwd_op, setup_context: Callable, backward: Callable) -> Callable:
    """fwd_op, bwd_op: `torch.library.custom_op`s; setup_context(ctx, inputs, output) as for register_autograd;
    backward(ctx, bwd, *grads) -> one gradient (or None) per input of fwd_op. Returns fn(*inputs) -> fwd_op's
    outputs, differentiable."""
    fwd_impl, bwd_impl = fwd_op._init_fn, bwd_op._init_fn
    fwd_op.register_autograd(lambda ctx, *grads: backward(ctx, bwd_op, *grads), setup_context=setup_context)

    class Eager(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            output = fwd_impl(*inputs)
            setup_context(ctx, inputs, output)
            return output

        @staticmethod
        @once_differentiable
        def backward(ctx, *grads):
            return backward(ctx, bwd_impl, *grads)

    Eager.__name__ = Eager.__qualname__ = f"{fwd_op._name}_eager"

    def call(*inputs):
        if torch.compiler.is_compiling():
            return fwd_op(*inputs)
        return Eager.apply(*inputs)

    return call
