"""kernels/custom_op.py: eager calls run the ops' implementations through an autograd.Function (no custom op
dispatched), torch.compile sees the custom ops, and both give the same values and gradients (each kernel's
compile test compares the two paths). Every Triton public function is checked (under the interpreter, tiny
shapes) for the eager path: its kernels run and no custom op is dispatched.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from bench.host_ops import HostOps  # noqa: E402
from kernels.bk_core.lookback import bk_core_lookback  # noqa: E402
from kernels.bk_core.triton import bk_core_triton  # noqa: E402
from kernels.custom_op import differentiable_op  # noqa: E402
from kernels.linear_attn.triton import causal_linear_attn_triton  # noqa: E402
from kernels.poincare.triton import exp0_triton, log0_triton, mobius_add_triton  # noqa: E402
from kernels.rmsnorm.triton import rms_norm_triton  # noqa: E402
from kernels.scan.triton import diag_scan_triton  # noqa: E402
from kernels.window_attn.triton import window_hyp_attn_triton  # noqa: E402


class _Namespaces(TorchDispatchMode):
    """Records the namespace ("aten", "phasebench", ...) of every op dispatched while active."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func.namespace)
        return func(*args, **(kwargs or {}))


# A toy pair: y = x * w, with a backward that records which bwd it was handed.
@torch.library.custom_op("phasebench_test::scale_fwd", mutates_args=())
def _scale_fwd(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * w


@torch.library.custom_op("phasebench_test::scale_bwd", mutates_args=())
def _scale_bwd(x: torch.Tensor, w: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return dy * w, (dy * x).sum(0)


@_scale_fwd.register_fake
def _(x, w):
    return torch.empty_like(x)


@_scale_bwd.register_fake
def _(x, w, dy):
    return torch.empty_like(x), torch.empty_like(w)


CALLED = []


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, bwd, dy):
    CALLED.append(bwd)
    return bwd(*ctx.saved_tensors, dy)


scale = differentiable_op(_scale_fwd, _scale_bwd, _setup, _backward)


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(5, 3, generator=gen, requires_grad=True), torch.randn(3, generator=gen, requires_grad=True)


def test_eager_calls_run_the_implementations_without_the_custom_ops():
    x, w = _inputs()
    CALLED.clear()
    with _Namespaces() as mode:
        y = scale(x, w)
        dx, dw = torch.autograd.grad(y.sum(), (x, w))
    assert "phasebench_test" not in mode.seen and "aten" in mode.seen
    assert CALLED == [_scale_bwd._init_fn]
    torch.testing.assert_close(y, x * w)
    torch.testing.assert_close(dx, w.expand(5, 3))
    torch.testing.assert_close(dw, x.sum(0))


def test_compiled_calls_hold_the_custom_ops_and_agree_with_eager():
    x, w = _inputs()
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    CALLED.clear()
    y = torch.compile(lambda a, b: scale(a, b) + 1, fullgraph=True, backend=counter)(x, w)
    dx, dw = torch.autograd.grad(y.sum(), (x, w))
    assert torch.ops.phasebench_test.scale_fwd.default in [n.target for n in counter.graphs[0].graph.nodes]
    assert CALLED and all(b is _scale_bwd for b in CALLED)  # AOTAutograd traced the backward through the op
    torch.testing.assert_close(y, x * w + 1)
    torch.testing.assert_close(dx, w.expand(5, 3))
    torch.testing.assert_close(dw, x.sum(0))


def test_a_second_derivative_is_refused_not_silently_wrong():
    x, w = _inputs()
    (dx,) = torch.autograd.grad(scale(x, w).pow(2).sum(), (x,), create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|differentiate"):
        torch.autograd.grad(dx.sum(), (x,))


def _t(*shape, seed=0, scale_=1.0):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale_).requires_grad_()


# Every public Triton function at a tiny shape: (function, inputs).
PUBLIC = {
    "rms_norm": lambda: (lambda x, w: rms_norm_triton(x, w, 1e-6), [_t(4, 16), _t(16, seed=1)]),
    "diag_scan": lambda: (diag_scan_triton, [_t(2, 3, 20, scale_=0.3), _t(2, 3, 20, seed=1)]),
    "linear_attn": lambda: (causal_linear_attn_triton, [_t(1, 2, 20, 8, seed=s) for s in range(3)]),
    "exp0": lambda: (lambda x: exp0_triton(x, 0.5), [_t(6, 8, scale_=0.3)]),
    "log0": lambda: (lambda x: log0_triton(x, 0.5), [_t(6, 8, scale_=0.1)]),
    "mobius_add": lambda: (
        lambda x, y: mobius_add_triton(x, y, 0.5),
        [_t(6, 8, scale_=0.1), _t(6, 8, seed=1, scale_=0.1)],
    ),
    "window_attn": lambda: (
        lambda q, k, v: window_hyp_attn_triton(q, k, v, torch.ones(2), torch.ones(2), window=8),
        [_t(1, 2, 20, 16, seed=s, scale_=0.3) for s in range(3)],
    ),
    "bk_core": lambda: (lambda v: torch.stack(bk_core_triton(v, *BK_PARAMS, chunk=8)), [_t(1, 20, 4)]),
    "bk_core_lookback": lambda: (lambda v: torch.stack(bk_core_lookback(v, *BK_PARAMS)), [_t(1, 20, 4)]),
}
BK_PARAMS = (torch.zeros(4), torch.full((4,), 0.5), torch.zeros(4), torch.ones(4))  # h0, beta, z_re, z_im


@pytest.mark.parametrize("name", list(PUBLIC))
def test_every_kernel_runs_eager_without_dispatching_its_custom_ops(name):
    fn, inputs = PUBLIC[name]()
    with HostOps().launches_counted() as spy, _Namespaces() as mode:
        out = fn(*inputs)
        grads = torch.autograd.grad(out.sum(), inputs)
    assert spy.launches > 0, "no Triton kernel ran"
    assert "phasebench" not in mode.seen and "aten" in mode.seen
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
