"""A dispatch mode that records the ops which make the host wait for the device on CUDA.

A CUDA-graph capture refuses them: reading a value (`.item()`, `bool()`, `torch.equal`) and ops whose
output size depends on values (boolean-mask indexing, `nonzero`, `masked_select`, `unique`). Run on the
CPU, it finds what `execution: graph` would refuse on the GPU.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
SYNCING = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.is_nonzero.default,
    aten.equal.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
}


class SyncSpy(TorchDispatchMode):
    """Records the host-synchronising ops run under it."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        bool_index = func is aten.index.Tensor and any(t is not None and t.dtype == torch.bool for t in args[1])
        if func in SYNCING or bool_index:
            self.calls.append(str(func))
        return func(*args, **(kwargs or {}))
