"""What one eager call of each Triton op asks of the host: its Triton launches and the torch ops around them.

    python bench/host_ops.py                        # CPU: Triton interpreted (TRITON_INTERPRET=1 is set)
    python bench/host_ops.py --device cuda --out results/kernels/host-ops.json

For each op of `bench/kernels.py` (its cases, at their quick shapes: the counts do not depend on the size
once a scan has several segments) and each Triton implementation of it, one forward and one backward (with
fixed random cotangents, after a warm-up call) are counted: the Triton launches, and the torch ops
dispatched outside them that do device work (not allocations, views or other aliases: does_work), by name,
the launchers' own included (an eager call runs the custom ops' implementations: kernels/custom_op.py). On a
GPU each counted op is at least one kernel launch and each launch is host work that a CUDA graph removes:
these are the eager path's glue, which `bench/kernels.py` times. The torch ops of the autograd engine itself
(a grad accumulated by a copy, say) count too. `glue us`: the median host time of a forward and backward with
the Triton launches skipped (glue_us), on this machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

if not torch.cuda.is_available():  # before triton is imported: on a CPU the kernels run interpreted
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.kernels import CASES, DTYPES, OPS, environment  # noqa: E402

#: aten ops that allocate without device work (views and other aliases are found by their storage: does_work)
ALLOCATIONS = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})
SIZE = 64  # N: BK-Core's default plan has two segments at its quick shape (four launches a direction: the halo kernel
# and the three two-pass ones it gates)


def _tensors(x) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_leaves(x) if isinstance(t, torch.Tensor)]


def does_work(name: str, args, out) -> bool:
    """Whether an op launches device work: an in-place op does; an allocation, an op with no tensor out, or
    one whose outputs all alias its inputs (a view, a `to` or `contiguous` that changed nothing) does not."""
    outs = _tensors(out)
    if name in ALLOCATIONS or not outs:
        return False
    if name.endswith("_"):
        return True
    inputs = {t.untyped_storage().data_ptr() for t in _tensors(args)}
    return not all(t.untyped_storage().data_ptr() in inputs for t in outs)


class HostOps(TorchDispatchMode):
    """Counts, while active, the Triton launches (`kernel[grid](...)`) and the torch ops with device work
    dispatched outside them (the interpreter's own copies are inside)."""

    def __init__(self):
        super().__init__()
        self.launches = 0
        self.ops: collections.Counter[str] = collections.Counter()
        self._inside = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if not self._inside and does_work(name, args, out):
            self.ops[name] += 1
        return out

    @contextmanager
    def launches_counted(self):
        """Active, with every Triton launch counted."""

        def counted(launch, *args, **kwargs):
            self.launches += 1
            self._inside += 1
            try:
                return launch(*args, **kwargs)
            finally:
                self._inside -= 1

        with launches_through(counted), self:
            yield self

    def summary(self) -> dict:
        return {"triton_launches": self.launches, "torch_ops": sum(self.ops.values()), "ops": dict(self.ops)}


@contextmanager
def launches_through(wrap):
    """Every Triton launch `kernel[grid](*args, **kwargs)` becomes `wrap(launch, *args, **kwargs)` (patched on
    KernelInterface.__getitem__, which an autotuner inherits; kernels.launch's direct launches, which skip it on a
    GPU, are off meanwhile)."""
    from triton.runtime.jit import KernelInterface

    from kernels import launch as kernel_launch

    original, direct = KernelInterface.__getitem__, kernel_launch.DIRECT

    def getitem(kernel, grid):
        launch = original(kernel, grid)
        return lambda *args, **kwargs: wrap(launch, *args, **kwargs)

    KernelInterface.__getitem__, kernel_launch.DIRECT = getitem, False
    try:
        yield
    finally:
        KernelInterface.__getitem__, kernel_launch.DIRECT = original, direct


def glue_us(fn, inputs, grads, calls: int = 50, rounds: int = 7) -> float:
    """Median microseconds of one forward and backward of fn with every Triton launch skipped: the host's
    Python, dispatch, autograd and torch-op work around the kernels on this machine, without the launches'
    own cost (outputs are uninitialised: only the time means anything)."""
    times = []
    with launches_through(lambda launch, *args, **kwargs: None):
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                outs = fn()
                torch.autograd.backward(outs if isinstance(outs, tuple) else (outs,), grads)
                for t in inputs:
                    t.grad = None
            times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def count(fn, inputs) -> dict:
    """One forward and one backward of fn (a tensor or tuple of tensors) after a warm-up call."""
    outs = fn()
    outs = outs if isinstance(outs, tuple) else (outs,)
    grads = [torch.randn_like(o) for o in outs]
    torch.autograd.backward(outs, grads)
    for t in inputs:
        t.grad = None
    with HostOps().launches_counted() as fwd:
        outs = fn()
    outs = outs if isinstance(outs, tuple) else (outs,)
    with HostOps().launches_counted() as bwd:
        torch.autograd.backward(outs, grads)
    for t in inputs:
        t.grad = None
    return {"forward": fwd.summary(), "backward": bwd.summary(), "glue_us": glue_us(fn, inputs, grads)}


def rows(ops: list[str], device: str) -> list[dict]:
    out = []
    for op in ops:
        shape, impls, _anchors, inputs, *_ = CASES[op](SIZE, device, DTYPES[op], True)
        for impl, fn in impls.items():
            if impl.startswith("triton"):
                out.append({"op": op, "impl": impl, "shape": shape, **count(fn, inputs)})
    return out


def render(table: list[dict]) -> str:
    head = f"{'op':20} {'impl':22} {'fwd launches':>12} {'fwd ops':>7} {'bwd launches':>12} {'bwd ops':>7}"
    head += f" {'glue us':>7}"
    lines = [head + "  torch ops (fwd | bwd)"]
    lines.append("-" * len(lines[0]))
    for r in table:
        f, b = r["forward"], r["backward"]
        names = " | ".join(
            ", ".join(f"{k} x{v}" if v > 1 else k for k, v in sorted(part["ops"].items())) or "-" for part in (f, b)
        )
        lines.append(
            f"{r['op']:20} {r['impl']:22} {f['triton_launches']:>12} {f['torch_ops']:>7} "
            f"{b['triton_launches']:>12} {b['torch_ops']:>7} {r['glue_us']:>7.0f}  {names}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    p.add_argument("--ops", default=",".join(OPS), help=f"comma list of {OPS}")
    p.add_argument("--out", type=Path, default=None, help="JSON file to write (the table and the environment)")
    args = p.parse_args(argv)
    ops = [o for o in args.ops.split(",") if o]
    for o in ops:
        if o not in CASES:
            p.error(f"--ops: unknown op {o!r} (one of {', '.join(OPS)})")
    table = rows(ops, args.device)
    print(render(table))
    report = {"environment": environment(argv, args.device), "N": SIZE, "rows": table}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
