"""Triton RMSNorm under the Triton interpreter (CPU): outputs and gradients against the reference,
opcheck on both custom ops, and a fullgraph compile against eager.

TRITON_INTERPRET is read when kernels.rmsnorm.triton is imported (at @triton.jit time), so it is set
before that import; run this module in a pytest process that has not imported the kernel for CUDA.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from compile_checks import assert_compiles_like_eager  # noqa: E402

import kernels.rmsnorm.triton as T  # noqa: E402
from kernels.backend import backend  # noqa: E402
from kernels.rmsnorm import rms_norm, rms_norm_ref  # noqa: E402
from kernels.rmsnorm.triton import rms_norm_triton  # noqa: E402
from models.layers.norm import RMSNorm  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")

# fp32: 1e-5 (sum order differs from PyTorch's). bf16 x / fp32 weight: y and dx are bf16 (one ulp is 2^-8
# relative, values here are O(1..5)), so 2e-2; dw stays float32 but sums bf16-rounded upstream grads: 1e-4.
TOL = {torch.float32: dict(y=1e-5, dx=1e-5, dw=1e-5), torch.bfloat16: dict(y=2e-2, dx=2e-2, dw=1e-4)}


def _data(shape, xdtype, seed):
    gen = torch.Generator().manual_seed(seed)
    d = shape[-1]
    x = (torch.randn(shape, generator=gen) * 2).to(xdtype)
    w = torch.randn(d, generator=gen) + 1
    gy = torch.randn(shape, generator=gen).to(xdtype)
    return x, w, gy


def _check(fn, shape, xdtype, eps=1e-6, seed=0):
    x, w, gy = _data(shape, xdtype, seed)
    xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
    xb, wb = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = fn(xa, wa, eps)
    yr = rms_norm_ref(xb, wb, eps)
    assert y.shape == yr.shape and y.dtype == yr.dtype == xdtype
    tol = TOL[xdtype]
    torch.testing.assert_close(y, yr, rtol=tol["y"], atol=tol["y"])
    dx, dw = torch.autograd.grad((y * gy).sum(), (xa, wa))
    dxr, dwr = torch.autograd.grad((yr * gy).sum(), (xb, wb))
    assert dx.dtype == xdtype and dw.dtype == w.dtype
    torch.testing.assert_close(dx, dxr, rtol=tol["dx"], atol=tol["dx"])
    torch.testing.assert_close(dw, dwr, rtol=tol["dw"], atol=tol["dw"])


@pytest.mark.parametrize("xdtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 5, 1), (3, 7), (2, 5, 129), (3, 96), (4, 64)])
def test_triton_matches_reference(shape, xdtype):
    _check(rms_norm_triton, shape, xdtype, seed=shape[-1])


@pytest.mark.parametrize("xdtype", [torch.float32, torch.bfloat16])
def test_large_eps(xdtype):
    """eps comparable to mean(x^2), so a kernel that drops or misplaces it fails."""
    _check(rms_norm_triton, (3, 7), xdtype, eps=0.5, seed=1)


def test_wide_row():
    """D = 8192: one row per program, BLOCK_D = 8192."""
    _check(rms_norm_triton, (2, 8192), torch.float32, eps=1e-5)


@pytest.mark.parametrize("block_r, programs", [(1, 1), (2, 3), (4, 2)])
def test_backward_programs_loop_over_tiles(block_r, programs):
    """Forced small tiles and few programs: each backward program walks several row tiles and the
    (P, D) dw partials are summed."""
    x, w, gy = _data((11, 7), torch.float32, seed=3)
    y, rstd = T._rms_norm_fwd(x, w, 1e-5, block_r=block_r)
    dx, dw = T._rms_norm_bwd(x, w, rstd, gy, block_r=block_r, programs=programs)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    yr = rms_norm_ref(xr, wr, 1e-5)
    dxr, dwr = torch.autograd.grad((yr * gy).sum(), (xr, wr))
    torch.testing.assert_close(y, yr, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rstd, torch.rsqrt(x.pow(2).mean(-1) + 1e-5), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dx, dxr, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dw, dwr, rtol=1e-5, atol=1e-5)


def test_weight_dtype_kept():
    """bf16 weight: dw comes back in bf16 (accumulated in float32)."""
    x, w, gy = _data((3, 9), torch.bfloat16, seed=4)
    w = w.bfloat16().requires_grad_()
    y = rms_norm_triton(x, w, 1e-6)
    (dw,) = torch.autograd.grad((y * gy).sum(), (w,))
    wr = w.detach().clone().requires_grad_()
    (dwr,) = torch.autograd.grad((rms_norm_ref(x, wr, 1e-6) * gy).sum(), (wr,))
    assert dw.dtype == torch.bfloat16
    torch.testing.assert_close(dw, dwr, rtol=2e-2, atol=2e-2)


def test_empty_rows():
    x = torch.zeros(0, 3, 8, requires_grad=True)
    w = torch.ones(8, requires_grad=True)
    y = rms_norm_triton(x, w, 1e-6)
    assert y.shape == (0, 3, 8)
    dx, dw = torch.autograd.grad(y.sum(), (x, w))
    assert dx.shape == x.shape and torch.equal(dw, torch.zeros(8))


def test_dispatch_and_module(monkeypatch):
    """backend('triton') routes float32/bf16 through the kernel (float64 to the reference); the module
    there still equals nn.RMSNorm."""
    calls = []
    orig = T.rms_norm_triton
    monkeypatch.setattr(T, "rms_norm_triton", lambda *a: calls.append(1) or orig(*a))
    x, w, _ = _data((2, 3, 10), torch.bfloat16, seed=5)
    with backend("triton"):
        rms_norm(x, w, 1e-6)
        assert len(calls) == 1
        rms_norm(x.double(), w, 1e-6)
        assert len(calls) == 1
        ref = torch.nn.RMSNorm(10, eps=1e-6)
        ours = RMSNorm(10, eps=1e-6)
        with torch.no_grad():
            ref.weight.copy_(w)
        ours.load_state_dict(ref.state_dict())
        torch.testing.assert_close(ours(x), ref(x), rtol=2e-2, atol=2e-2)
        assert len(calls) == 2
    with backend("torch"):
        rms_norm(x, w, 1e-6)
        assert len(calls) == 2


# ---- custom ops: opcheck, and torch.compile(fullgraph=True) through them --------------------------------------------


@pytest.mark.parametrize(
    "xdtype, wdtype",
    [(torch.float32, torch.float32), (torch.bfloat16, torch.float32), (torch.bfloat16, torch.bfloat16)],
)
def test_opcheck(xdtype, wdtype):
    x, w, gy = _data((5, 6), xdtype, seed=6)
    w = w.to(wdtype)
    torch.library.opcheck(T.rms_norm_fwd_op, (x.clone().requires_grad_(), w.clone().requires_grad_(), 1e-6))
    _, rstd = T.rms_norm_fwd_op(x, w, 1e-6)
    torch.library.opcheck(T.rms_norm_bwd_op, (x, w, rstd, gy))


@pytest.mark.parametrize("shape", [(2, 3, 7), (4, 16)])
def test_compile_matches_eager(shape):
    x, w, _ = _data(shape, torch.float32, seed=7)
    assert_compiles_like_eager(
        lambda x, w: rms_norm_triton(x, w, 1e-5),
        torch.ops.phasebench.rms_norm_fwd,
        [x, w],
        seed=8,
        rtol=1e-6,
        atol=1e-6,
    )


def test_the_backward_is_one_launch_and_the_sum_of_its_partials():
    """rstd is a non-differentiable output: with materialized gradients autograd launched a zeros kernel
    for it in every backward (counted on the H200: 3 kernels instead of 2)."""
    from bench.host_ops import HostOps

    norm = RMSNorm(64)
    x = torch.randn(2, 8, 64, requires_grad=True)
    gy = torch.randn(2, 8, 64)
    with backend("triton"):
        y = norm(x)
    with HostOps().launches_counted() as spy:
        torch.autograd.grad(y, (x, norm.weight), gy)
    assert spy.summary() == {"triton_launches": 1, "torch_ops": 1, "ops": {"sum": 1}}
