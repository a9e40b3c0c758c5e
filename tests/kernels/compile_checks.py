"""A kernel's public function compiled with fullgraph equals its eager call; dynamo sees the custom op, and the
eager call runs the same implementations without it (kernels/custom_op.py)."""

from __future__ import annotations

import contextlib

import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch.utils._python_dispatch import TorchDispatchMode


class _Namespaces(TorchDispatchMode):
    """Records the namespace of every op dispatched while active."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func.namespace)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def dispatched_namespaces():
    """Yields the set of namespaces ("aten", "phasebench", ...) of the ops dispatched inside the block."""
    with _Namespaces() as mode:
        yield mode.seen


def assert_compiles_like_eager(fn, op, inputs, seed: int = 0, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """fn(*inputs) compiled (fullgraph, aot_eager) == eager, outputs and input grads; `op` (a custom op packet)
    is exactly one node of the one graph, and the eager forward and backward dispatch no custom op."""
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, fullgraph=True, backend=counter)
    outs, grads = [], []
    for f in (fn, compiled):
        ins = [t.clone().requires_grad_() for t in inputs]
        with dispatched_namespaces() if f is fn else contextlib.nullcontext(set()) as seen:
            out = f(*ins)
            w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
            grads.append(torch.autograd.grad((out * w).sum(), ins))
        if f is fn:
            assert "aten" in seen and "phasebench" not in seen, seen
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0], rtol=rtol, atol=atol)
    for a, b in zip(grads[1], grads[0], strict=False):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    assert counter.frame_count == 1
    targets = [n.target for n in counter.graphs[0].graph.nodes]
    assert targets.count(op.default) == 1, targets
