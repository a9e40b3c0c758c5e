"""kernels/launch.py on the CPU: its key splits every specialisation Triton's own specialiser splits, its plan of a
real JITFunction's parameters, and the interpreter's path (the JIT's, nothing cached).

TRITON_INTERPRET is read when a kernel is decorated, so it is set here, before the kernel below."""

import itertools
import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import BaseBackend  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

from kernels import launch as L  # noqa: E402


def _axpb(X, Y, n, a, B: tl.constexpr, BLOCK: tl.constexpr = 16):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(Y + i, tl.load(X + i, mask=m) * a + B, mask=m)


_axpb_interpreted = triton.jit(_axpb)


def _triton_spec(a):
    """Triton's own specialisation of a runtime argument (type and attribute), as its JIT binder computes it."""
    from triton._C.libtriton import native_specialize_impl

    return native_specialize_impl(BaseBackend, a, False, True, True)


def _samples():
    base = torch.zeros(64)
    tensors = [base.to(dt)[off:] for dt in (torch.float32, torch.float16, torch.bfloat16) for off in range(5)]
    ints = [0, 1, 2, 15, 16, 17, 32, 2**31 - 16, 2**31 - 1, 2**31, 2**31 + 16, -(2**31), -(2**31) - 1, -16, -1]
    ints += [2**63 - 16, 2**63, 2**63 + 16, 2**64 - 1, -(2**63)]  # below -2^63 or from 2^64 Triton refuses
    return tensors + ints + [True, False, 0.5, 2.0, None]


def test_the_key_splits_every_specialisation_the_jit_splits():
    samples = _samples()
    for a, b in itertools.combinations(samples, 2):
        if _triton_spec(a) != _triton_spec(b):
            assert L.specialisation_key((a,)) != L.specialisation_key((b,)), (a, b, _triton_spec(a), _triton_spec(b))
    # scalars by type and value, finer than the JIT: True is not 1, nor 1.0
    keys = [L.specialisation_key((a,)) for a in (1, True, 1.0, 16, 48, 0.5, 2.0, None, False, 0)]
    assert len(set(keys)) == len(keys)
    x = torch.zeros(64)
    assert L.specialisation_key((x,)) == L.specialisation_key((x[4:],)) != L.specialisation_key((x[1:],))
    assert L.specialisation_key((x, x.half())) != L.specialisation_key((x, x))


def test_unknown_types_go_to_the_jit():
    x = torch.zeros(8)
    assert L.specialisation_key((x, 16, 4)) != L.specialisation_key((x, 16, 8))
    assert L.specialisation_key((x, "16", 4)) is None
    assert L.specialisation_key((x, [16], 4)) is None
    assert L.specialisation_key((x, torch.float16)) is None


def test_the_plan_and_tail_of_a_real_jit_function():
    kernel = JITFunction(_axpb)  # a compiled-path kernel object; nothing is compiled on the CPU
    constexpr, names, defaults, runners = L._plan(kernel)
    assert names == ("X", "Y", "n", "a", "B", "BLOCK") and constexpr == (False,) * 4 + (True, True)
    assert runners == {} and L._plans[kernel][3] is runners
    assert L._tail(names, defaults, constexpr, 4, {"B": 3}) == (3, 16)
    assert L._tail(names, defaults, constexpr, 4, {"B": 3, "BLOCK": 32, "num_warps": 2}) == (3, 32)
    assert L._tail(names, defaults, constexpr, 5, {}) == (16,)
    assert L._tail(names, defaults, constexpr, 3, {"a": 2.0, "B": 3}) is None  # a runtime argument by keyword


@pytest.mark.skipif(not L.DIRECT, reason=f"triton {triton.__version__}: launches take the JIT's path")
def test_launches_take_the_runner_while_a_launch_hook_is_set(monkeypatch):
    from triton.knobs import HookChain

    runtime = L.knobs.runtime
    monkeypatch.setattr(runtime, "launch_enter_hook", HookChain())
    monkeypatch.setattr(runtime, "launch_exit_hook", HookChain(reversed=True))
    assert not L._hooked()
    runtime.launch_exit_hook.add(print)
    assert L._hooked()
    runtime.launch_exit_hook.remove(print)
    assert not L._hooked()
    monkeypatch.setattr(runtime, "launch_enter_hook", None)  # a hook set to something that is not a chain
    assert L._hooked()


def test_the_cache_of_a_kernel_stays_bounded(monkeypatch):
    monkeypatch.setattr(L, "MAX_RUNNERS", 3)
    runners: dict = {}
    for g in range(7):
        L._remember(runners, ((g,),), g)
        assert len(runners) <= 3 and runners[((g,),)] == g
    assert runners == {((6,),): 6}  # emptied when full, before keys 3 and 6


@pytest.mark.parametrize("n", [1, 16, 37])
def test_interpreted_kernels_take_the_jits_path(n):
    x = torch.arange(40, dtype=torch.float32)
    y = torch.full((40,), -1.0)
    L.launch(_axpb_interpreted, (triton.cdiv(n, 16),), x, y, n, 2.0, B=3)
    assert torch.equal(y[:n], x[:n] * 2 + 3) and torch.equal(y[n:], torch.full((40 - n,), -1.0))
    assert _axpb_interpreted not in L._plans
