"""A kernel's public function compiled with fullgraph equals its eager call, and dynamo sees the custom op."""

from __future__ import annotations

import torch
from torch._dynamo.testing import CompileCounterWithBackend


def assert_compiles_like_eager(fn, op, inputs, seed: int = 0, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """fn(*inputs) compiled (fullgraph, aot_eager) == eager, outputs and input grads; `op` (a custom op packet)
    is exactly one node of the one graph."""
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, fullgraph=True, backend=counter)
    outs, grads = [], []
    for f in (fn, compiled):
        ins = [t.clone().requires_grad_() for t in inputs]
        out = f(*ins)
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
        outs.append(out)
        grads.append(torch.autograd.grad((out * w).sum(), ins))
    torch.testing.assert_close(outs[1], outs[0], rtol=rtol, atol=atol)
    for a, b in zip(grads[1], grads[0], strict=False):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    assert counter.frame_count == 1
    targets = [n.target for n in counter.graphs[0].graph.nodes]
    assert targets.count(op.default) == 1, targets
