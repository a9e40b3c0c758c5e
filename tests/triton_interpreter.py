"""Three costs of the Triton interpreter cut for the whole suite (conftest installs them), its results unchanged.

Scans. The interpreter (triton.runtime.interpreter.ScanOps.generic_scan) runs a scan with a user combine one element at
a time: a (64, 32) tile costs 2,048 interpreted combine calls, and the scans of the diagonal-scan and BK-Core kernels
were most of an interpreted model forward. `scan_by_slices` runs the same left fold along the scan axis, one
combine call per position on the whole slice across the other axes: every element sees the same operations in
the same order (combine functions are elementwise), so the result is the interpreter's, in `len(axis)` calls.
tests/kernels/test_triton_interpreter.py checks it against the interpreter's own scan.

Device-function calls. Each call of a @triton.jit helper from a kernel re-patched triton.language for the
interpreter (InterpretedFunction.__call__ runs `_patch_lang`, ~2 ms), though the kernel's launch had patched the
same modules and keeps them patched until it returns: a third of an interpreted model forward. `device_call`
patches only where a module the helper sees is not patched yet.

Overflow checks. The interpreter checks every int32 add, sub and mul for overflow (sanitize_overflow, on there by
default, off in compiled kernels unless debugging): four more interpreted operations each, 40 % of the BK-Core
tests' time. At test shapes no offset comes near 2**31, so no check could fire; offsets past int32 are the
launchers' to refuse or widen (BK-Core refuses such a shape: test_bk_core_triton.py,
test_a_batch_row_past_int32_offsets_is_refused). The suite runs without them.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import triton.language as tl
from triton.runtime import interpreter

#: the interpreter's own element-by-element scan and device-function call, kept for the tests that compare (None
#: where this triton lacks them: install() then leaves that cost, and test_triton_interpreter.py says so)
THEIRS = {
    "generic_scan": getattr(interpreter.ScanOps, "generic_scan", None),
    "__call__": getattr(interpreter, "InterpretedFunction", None) and interpreter.InterpretedFunction.__call__,
}


def scan_by_slices(self, input):
    """ScanOps.generic_scan's contract (inputs tuple of tensors, scan along self.axis, reverse already applied
    by the caller) -> list of tensors of the inputs' shapes and dtypes."""
    axis = self.axis
    data = [arg.handle.data for arg in input]
    out = [np.empty_like(d) for d in data]
    acc = [np.take(d, 0, axis=axis) for d in data]
    for o, a in zip(out, acc, strict=True):
        _put(o, axis, 0, a)
    for i in range(1, data[0].shape[axis]):
        left = [self.to_tensor(a, arg.dtype) for a, arg in zip(acc, input, strict=True)]
        right = [self.to_tensor(np.take(d, i, axis=axis), arg.dtype) for d, arg in zip(data, input, strict=True)]
        ret = self.combine_fn.fn(*left, *right)
        ret = ret if isinstance(ret, tuple) else (ret,)
        acc = [_values(r, a) for r, a in zip(ret, acc, strict=True)]
        for o, a in zip(out, acc, strict=True):
            _put(o, axis, i, a)
    return [self.to_tensor(o, arg.dtype) for o, arg in zip(out, input, strict=True)]


def _put(out: np.ndarray, axis: int, i: int, values: np.ndarray) -> None:
    """out[..., i, ...] (i along `axis`) = values."""
    index = [slice(None)] * out.ndim
    index[axis] = i
    out[tuple(index)] = values


def _values(ret, like: np.ndarray) -> np.ndarray:
    """A combine's result as an array of `like`'s shape and dtype (a scalar result broadcast, as the
    interpreter stores it into every element)."""
    data = ret.handle.data if isinstance(ret, tl.core.tensor) else np.asarray(ret)
    return np.broadcast_to(data, like.shape).astype(like.dtype) if like.shape else data.reshape(()).astype(like.dtype)


#: each language module's own `load`, which the interpreter's patching replaces while a kernel runs
_UNPATCHED_LOAD = {tl: tl.load, tl.core: tl.core.load}
_LANGS: dict[object, tuple] = {}


def _langs(fn) -> tuple:
    """The triton.language modules a jit function's globals see (what `_patch_lang(fn)` patches)."""
    if fn not in _LANGS:
        _LANGS[fn] = tuple(v for v in fn.__globals__.values() if inspect.ismodule(v) and v in _UNPATCHED_LOAD)
    return _LANGS[fn]


def device_call(self, *args, **kwargs):
    """InterpretedFunction.__call__ (a @triton.jit helper called from a kernel), patching triton.language only
    where the running kernel's launch has not."""
    if any(lang.load is _UNPATCHED_LOAD[lang] for lang in _langs(self.fn)):
        interpreter._patch_lang(self.fn)
    fn = self.rewrite()
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        raise interpreter.InterpreterError(repr(e)) from e


def install() -> None:
    """Make the interpreter's scans with a user combine run by slices, its device-function calls skip the
    patching their kernel did, and its integer arithmetic go unchecked for overflow (idempotent). A triton whose
    interpreter lacks one of the hooks keeps that cost (the suite runs slower, and test_the_suite_installs_all
    fails naming it)."""
    if THEIRS["generic_scan"] is not None:
        interpreter.ScanOps.generic_scan = scan_by_slices
    if THEIRS["__call__"] is not None and hasattr(interpreter, "_patch_lang"):
        interpreter.InterpretedFunction.__call__ = device_call
    builder = getattr(interpreter, "interpreter_builder", None)
    if builder is not None and hasattr(builder.options, "sanitize_overflow"):
        builder.options = dataclasses.replace(builder.options, sanitize_overflow=False)
