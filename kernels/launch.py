"""Launching a Triton kernel with the JIT's per-call work done once per specialisation.

`launch(kernel, grid, *args, **kw)` does what `kernel[grid](*args, **kw)` does. On every call the JIT binds the
arguments, specialises them, looks the compiled kernel up in its cache and checks the globals the kernel reads:
28 us a launch of BK-Core's sweep kernel on an H100 machine's host, where the compiled kernel's own launcher took
13 us (run 36 of results/kernels/runs.md). Here the first call of each specialisation goes through the JIT, which
compiles (or finds) the kernel and launches it; later calls hand the same arguments to that compiled kernel's
launcher. Eager calls gain; CUDA-graph replays, which launch nothing from the host, do not change.

The key holds at least what the JIT specialises on: per runtime argument its dtype and 16-byte alignment
(tensors), or whether it is 1, whether 16 divides it and its integer type's range (ints), or its type (floats) or
value (bools); the values of constexpr arguments and of keyword arguments (constexprs and launch options); the
grid; the current device. A key the JIT would split is never shared; a key split here that the JIT shares costs
one more JIT call, once.

The JIT serves every call where this cannot: under the interpreter (TRITON_INTERPRET=1), for autotuned or
heuristic kernels and grids given as functions, for runtime arguments passed by keyword or of other types, and
for Triton versions whose launch convention was not read here (the compiled kernel's launcher takes every bound
argument, constexprs included, in 3.6 and 3.9; earlier versions passed fewer).

Each kernel remembers at most MAX_RUNNERS keys; a full cache empties and fills again through the JIT.

Not covered: a kernel that reads a module global changed after its first launch (the JIT raises; this keeps the
kernel compiled with the old value). Thread-safety: the caches are plain dicts; two threads that miss at once
both go through the JIT, which is safe.
"""

from __future__ import annotations

import torch
import triton
from triton.runtime.jit import JITFunction

__all__ = ["launch", "specialisation_key"]

_VERSION = tuple(int(p) for p in triton.__version__.split(".")[:2])
#: whether launches may skip the JIT: the compiled kernels' launch convention used here was read in triton 3.6 and
#: 3.9 (under the interpreter, kernels are not JITFunctions and always take the JIT's path)
DIRECT = (3, 6) <= _VERSION < (3, 10)

#: a kernel's direct launches remembered at most: the key holds the grid, which follows the shapes, so a run that
#: meets ever new lengths (decoding token by token) would grow the cache without end; full, it starts again
MAX_RUNNERS = 512

_I32, _I64 = 1 << 31, 1 << 63
#: per kernel: (constexpr flags of its parameters, parameter names, their defaults, {key: (runner, tail)})
_plans: dict[JITFunction, tuple[tuple[bool, ...], tuple[str, ...], tuple, dict]] = {}


#: an argument's key where this module does not know what the JIT makes of it
_UNKNOWN = object()


def _arg_key(a):
    """What the JIT specialises a runtime argument on, or more; _UNKNOWN for types not handled here."""
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    t = type(a)
    if t is int:
        return a == 1, a % 16 == 0, 0 if -_I32 <= a < _I32 else 1 if -_I64 <= a < _I64 else 2
    if t is bool or a is None:
        return t, a
    if t is float:
        return t
    return _UNKNOWN


def specialisation_key(constexpr: tuple[bool, ...], args: tuple) -> tuple | None:
    """The key of positional `args` of a kernel whose parameters' constexpr flags are `constexpr`: constexprs by
    value, runtime arguments by `_arg_key`. None if an argument's type is not known here."""
    key = tuple(a if c else _arg_key(a) for a, c in zip(args, constexpr, strict=False))
    return None if any(k is _UNKNOWN for k in key) else key


def _plan(kernel: JITFunction):
    params = kernel.params
    plan = (tuple(p.is_constexpr for p in params), tuple(p.name for p in params), tuple(p.default for p in params), {})
    _plans[kernel] = plan
    return plan


def _tail(names, defaults, constexpr, n_args: int, kw: dict):
    """The values of the parameters after the positional ones (keywords, else defaults); None where a runtime
    parameter comes by keyword."""
    tail = []
    for name, default, c in zip(names[n_args:], defaults[n_args:], constexpr[n_args:], strict=True):
        if name in kw and not c:
            return None
        tail.append(kw.get(name, default))
    return tuple(tail)


def _remember(runners: dict, key, value) -> None:
    """runners[key] = value, after emptying runners if it holds MAX_RUNNERS already."""
    if len(runners) >= MAX_RUNNERS:
        runners.clear()
    runners[key] = value


def launch(kernel, grid, *args, **kw) -> None:
    """`kernel[grid](*args, **kw)`: grid a tuple of 1-3 ints (or, for the JIT's path, a function of the launch's
    meta-parameters); args positional up to the last runtime argument."""
    if not (DIRECT and type(kernel) is JITFunction and type(grid) is tuple):
        kernel[grid](*args, **kw)
        return
    plan = _plans.get(kernel) or _plan(kernel)
    constexpr, names, defaults, runners = plan
    spec = specialisation_key(constexpr, args)
    key = None if spec is None else (spec, grid, torch.cuda.current_device(), *kw.items())
    try:
        hit = runners.get(key)
    except TypeError:  # an unhashable constexpr
        hit = key = None
    if hit is not None:
        runner, tail = hit
        runner(*args, *tail)
        return
    compiled = kernel[grid](*args, **kw)
    tail = _tail(names, defaults, constexpr, len(args), kw)
    if key is not None and tail is not None and compiled is not None:
        _remember(runners, key, (compiled[(*grid, 1, 1)[:3]], tail))
