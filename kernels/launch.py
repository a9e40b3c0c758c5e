"""Launching a Triton kernel with the JIT's per-call work done once per specialisation.

`launch(kernel, grid, *args, **kw)` does what `kernel[grid](*args, **kw)` does. On every call the JIT binds the
arguments, specialises them, looks the compiled kernel up in its cache and checks the globals the kernel reads:
28 us a launch of BK-Core's sweep kernel on an H100 machine's host, where the compiled kernel's own launcher took
13 us (run 36 of results/kernels/runs.md). Here the first call of each specialisation goes through the JIT, which
compiles (or finds) the kernel and launches it; later calls hand the same arguments, the current stream and the
kernel's handles straight to the compiled kernel's launcher (`CompiledKernel.run`). While a launch hook is set (a
profiler's), they go through the compiled kernel's runner instead, which builds the metadata the hooks take. Eager
calls gain; CUDA-graph replays, which launch nothing from the host, do not change.

The key is finer than what the JIT specialises on: per tensor its dtype and its address modulo 16 (the JIT: whether
16 divides it), per int, float, bool or None its type and value (the JIT keys ints by whether they are 1, whether
16 divides them and their range, floats by type); the values of keyword arguments (constexprs and launch
options); the grid; the current device. A key the JIT would split is never shared; a key split here that the JIT
shares costs one more JIT call, once. This key takes the adjoint sweep's 18 arguments 3.0-3.1 us on the CPU VM;
keyed by the JIT's classes they took 6.3 us (results/kernels/launch-run39/key_cost.py).

The JIT serves every call where this cannot: under the interpreter (TRITON_INTERPRET=1), for autotuned or
heuristic kernels and grids given as functions, for runtime arguments passed by keyword or of other types (and
positional constexprs of other types), and for Triton versions whose launch convention was not read here (the
compiled kernel's launcher takes every bound argument, constexprs included, in 3.6 and 3.9; earlier versions
passed fewer).

Each kernel remembers at most MAX_RUNNERS keys; a full cache empties and fills again through the JIT.

Not covered: a kernel that reads a module global changed after its first launch (the JIT raises; this keeps the
kernel compiled with the old value). Thread-safety: the caches are plain dicts; two threads that miss at once
both go through the JIT, which is safe.
"""

from __future__ import annotations

import torch
import triton
from triton.runtime.jit import JITFunction

__all__ = ["TRITON_VERSION", "launch", "specialisation_key"]

#: (major, minor) of the installed Triton
TRITON_VERSION = tuple(int(p) for p in triton.__version__.split(".")[:2])
#: whether launches may skip the JIT: the compiled kernels' launch convention used here was read in triton 3.6 and
#: 3.9 (under the interpreter, kernels are not JITFunctions and always take the JIT's path)
DIRECT = (3, 6) <= TRITON_VERSION < (3, 10)
if DIRECT:
    from triton import knobs

#: a kernel's direct launches remembered at most: the key holds the grid, which follows the shapes, so a run that
#: meets ever new lengths (decoding token by token) would grow the cache without end; full, it starts again
MAX_RUNNERS = 512

#: per kernel: (constexpr flags of its parameters, parameter names, their defaults, {key: launch entry}); an entry
#: holds the compiled kernel's launcher, handles, grid and runner and the parameters after the positional ones
_plans: dict[JITFunction, tuple[tuple[bool, ...], tuple[str, ...], tuple, dict]] = {}

#: argument types keyed by their value: finer than the JIT, which keys ints by a few classes and floats by type
_BY_VALUE = frozenset({int, float, bool, type(None)})
_Tensor = torch.Tensor


def specialisation_key(args: tuple) -> tuple | None:
    """The key of positional `args`: two entries an argument, a tensor's dtype and address modulo 16, or a
    scalar's type and value. None if an argument is of another type."""
    key: list = []
    add = key.append
    for a in args:
        if isinstance(a, _Tensor):
            add(a.dtype)
            add(a.data_ptr() & 15)
        elif type(a) in _BY_VALUE:
            add(type(a))
            add(a)
        else:
            return None
    return tuple(key)


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


def _hooked() -> bool:
    """Whether a launch hook is set (a profiler's): launches then go through the compiled kernel's runner, which
    builds the launch metadata the hooks take."""
    rt = knobs.runtime
    return bool(getattr(rt.launch_enter_hook, "calls", True) or getattr(rt.launch_exit_hook, "calls", True))


def launch(kernel, grid, *args, **kw) -> None:
    """`kernel[grid](*args, **kw)`: grid a tuple of 1-3 ints (or, for the JIT's path, a function of the launch's
    meta-parameters); args positional up to the last runtime argument."""
    if not (DIRECT and type(kernel) is JITFunction and type(grid) is tuple):
        kernel[grid](*args, **kw)
        return
    constexpr, names, defaults, launchers = _plans.get(kernel) or _plan(kernel)
    spec = specialisation_key(args)
    device = torch.cuda.current_device()
    key = None if spec is None else (spec, grid, device, *kw.items())
    try:
        hit = launchers.get(key)
    except TypeError:  # an unhashable keyword value
        hit = key = None
    if hit is not None:
        run, function, metadata, grid3, runner, tail = hit
        if _hooked():
            runner(*args, *tail)
        else:
            run(*grid3, torch._C._cuda_getCurrentRawStream(device), function, metadata, None, None, None, *args, *tail)
        return
    compiled = kernel[grid](*args, **kw)
    tail = _tail(names, defaults, constexpr, len(args), kw)
    if key is not None and tail is not None and compiled is not None:
        grid3 = (*grid, 1, 1)[:3]
        runner = compiled[grid3]  # also loads the kernel's handles: function, run
        _remember(launchers, key, (compiled.run, compiled.function, compiled.packed_metadata, grid3, runner, tail))
