"""The suite's interpreter shortcuts (tests/triton_interpreter.py) change no result.

The by-slices scan gives what the interpreter's own element-by-element scan gives, bit for bit: the real kernels'
combines (complex affine maps, a rescaled 2x2 complex matrix product, the diagonal scan's affine map) along either
axis of a tile, forwards and reversed, on a 1-D block too. Device functions called without re-patching compute
what they did, and triton.language is unpatched again after each launch."""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
import triton_interpreter  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

from kernels.bk_core.triton import _affine_combine, _mat_combine  # noqa: E402
from kernels.scan.triton import _affine_combine as _scan_combine  # noqa: E402


@triton.jit
def _scan2_kernel(A, B, OA, OB, AXIS: tl.constexpr, REVERSE: tl.constexpr, R: tl.constexpr, C: tl.constexpr):
    idx = tl.arange(0, R)[:, None] * C + tl.arange(0, C)[None, :]
    a, b = tl.associative_scan((tl.load(A + idx), tl.load(B + idx)), AXIS, _scan_combine, reverse=REVERSE)
    tl.store(OA + idx, a)
    tl.store(OB + idx, b)


@triton.jit
def _scan4_kernel(X, OUT, AXIS: tl.constexpr, REVERSE: tl.constexpr, R: tl.constexpr, C: tl.constexpr):
    idx = tl.arange(0, R)[:, None] * C + tl.arange(0, C)[None, :]
    n = R * C
    a, b, c, d = tl.associative_scan(
        (tl.load(X + idx), tl.load(X + n + idx), tl.load(X + 2 * n + idx), tl.load(X + 3 * n + idx)),
        AXIS,
        _affine_combine,
        reverse=REVERSE,
    )
    tl.store(OUT + idx, a)
    tl.store(OUT + n + idx, b)
    tl.store(OUT + 2 * n + idx, c)
    tl.store(OUT + 3 * n + idx, d)


@triton.jit
def _scan8_kernel(X, OUT, N: tl.constexpr):
    i = tl.arange(0, N)
    q = tl.associative_scan(
        tuple(tl.load(X + k * N + i) for k in tl.static_range(8)), 0, _mat_combine
    )  # a 1-D block: the slices are scalars
    for k in tl.static_range(8):
        tl.store(OUT + k * N + i, q[k])


def _both(run, name="generic_scan", cls=interpreter.ScanOps, ours=triton_interpreter.scan_by_slices):
    """run() under the interpreter's own `cls.name`, then under the suite's."""
    outs = []
    for use in (triton_interpreter.THEIRS[name], ours):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cls, name, use)
            outs.append(run())
    return outs


@triton.jit
def _helper(x, k):
    return tl.exp(tl.where(x > 0, x * k, -x)) + tl.sum(x, axis=0)


@triton.jit
def _outer_helper(x):
    return _helper(x, 0.5) * _helper(x, 2.0)


@triton.jit
def _helpers_kernel(X, OUT, N: tl.constexpr):
    i = tl.arange(0, N)
    tl.store(OUT + i, _outer_helper(tl.load(X + i)))


def test_device_functions_without_repatching():
    x = torch.randn(32, generator=torch.Generator().manual_seed(6))

    def run():
        out = torch.empty_like(x)
        _helpers_kernel[(1,)](x, out, 32)
        return out

    theirs, ours = _both(run, "__call__", interpreter.InterpretedFunction, triton_interpreter.device_call)
    assert torch.equal(theirs, ours)
    want = (torch.exp(torch.where(x > 0, x * 0.5, -x)) + x.sum()) * (torch.exp(torch.where(x > 0, x * 2, -x)) + x.sum())
    torch.testing.assert_close(ours, want)
    assert tl.load is triton_interpreter._UNPATCHED_LOAD[tl]  # the launch's patches are gone


@pytest.mark.parametrize("axis, reverse", [(0, False), (1, False), (1, True), (0, True)])
def test_two_operand_affine_scan(axis, reverse):
    g = torch.Generator().manual_seed(axis + 2 * reverse)
    a, b = torch.rand(8, 16, generator=g) * 1.5, torch.randn(8, 16, generator=g)

    def run():
        oa, ob = torch.empty_like(a), torch.empty_like(b)
        _scan2_kernel[(1,)](a, b, oa, ob, axis, reverse, 8, 16)
        return torch.stack([oa, ob])

    elements, slices = _both(run)
    assert torch.equal(elements, slices)
    ref_b = _sequential_affine(a, b, axis, reverse)
    torch.testing.assert_close(slices[1], ref_b, rtol=1e-5, atol=1e-5)  # and it is the scan it claims to be


@pytest.mark.parametrize("axis, reverse", [(0, False), (1, True)])
def test_complex_affine_scan(axis, reverse):
    x = torch.randn(4, 4, 8, generator=torch.Generator().manual_seed(3))

    def run():
        out = torch.empty_like(x)
        _scan4_kernel[(1,)](x, out, axis, reverse, 4, 8)
        return out

    elements, slices = _both(run)
    assert torch.equal(elements, slices)


def test_rescaled_matrix_scan_on_a_1d_block():
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(4))

    def run():
        out = torch.empty_like(x)
        _scan8_kernel[(1,)](x, out, 16)
        return out

    elements, slices = _both(run)
    assert torch.equal(elements, slices)
    assert not torch.equal(slices[:, 1:], x[:, 1:])  # the combine ran


def test_the_suite_installs_all():
    assert interpreter.ScanOps.generic_scan is triton_interpreter.scan_by_slices
    assert interpreter.InterpretedFunction.__call__ is triton_interpreter.device_call
    assert not interpreter.interpreter_builder.options.sanitize_overflow


def _sequential_affine(a, b, axis, reverse):
    """h_t = a_t h_{t-1} + b_t along `axis` (from the end when reverse), h_{-1} = 0."""
    a, b = (a, b) if axis == 1 else (a.T, b.T)
    a, b = (a.flip(1), b.flip(1)) if reverse else (a, b)
    h, out = torch.zeros(a.shape[0]), []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    y = torch.stack(out, 1)
    y = y.flip(1) if reverse else y
    return y if axis == 1 else y.T
