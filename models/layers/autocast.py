"""One autocast cast for an activation that several autocast ops read (amp precisions).

Under autocast every linear or conv casts its fp32 input itself, so an input read by k projections is
cast k times in forward, and in backward each cast's bf16 grad is cast back to fp32 before autograd sums
them: 2 k activation-sized copies. :func:`autocast_inputs` casts once and hands out views of the cast;
its backward sums the k grads in fp32 (the dtype autograd summed the k fp32 grads in before), into one
copy of the first grad. Forward values are those of the k casts; the grad sum is the same fp32 sum of
the same bf16 grads, in the order of the views.
"""

from __future__ import annotations

import torch


class _SharedCast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dtype, n):
        ctx.set_materialize_grads(False)
        ctx.x_dtype = x.dtype
        y = x.to(dtype)
        return tuple(y.view_as(y) for _ in range(n))

    @staticmethod
    def backward(ctx, *grads):
        grads = [g for g in grads if g is not None]
        total = grads[0].to(ctx.x_dtype, copy=True)
        for g in grads[1:]:
            total.add_(g)
        return total, None, None


def autocast_inputs(x: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """x -> n inputs for autocast ops (linear, conv) that all read x: views of one cast of x to the autocast
    dtype when autocast would cast x, else x itself n times."""
    device = x.device.type
    if x.is_meta or not torch.is_autocast_enabled(device):  # meta has no autocast dtype to ask for
        return (x,) * n
    dtype = torch.get_autocast_dtype(device)
    if x.dtype in (dtype, torch.float64):
        return (x,) * n
    return _SharedCast.apply(x, dtype, n)
