"""Activation-sized copies in one step (dtype casts, layout copies, clones), by the source line that
asked for them: the traffic a GPU profile shows as copy kernels, counted on any device.

    python bench/copies.py --set model=phase8 d_model=128 n_layers=2 n_heads=2 vocab_size=512 \
        seq_len=128 batch_size=2 precision=pure_bf16 device=cpu kernels=triton --out results/models/copies-phase8

The config is a run config of a spec, as in `bench/profile_step.py`, and the step is the benchmark job's
(forward, loss, backward, optimizer). One warm-up step, then every `_to_copy`, `copy_` and `clone` of
the counted step whose output holds at least a quarter of an activation (B N d elements) is charged to
the autograd node running it in a backward (`<autograd: ToCopyBackward0>`: the backward of a cast), else
to the innermost line of this repository on the Python stack. Bytes are reported per layer in units of
one activation in the model's compute dtype.
Without a GPU, `kernels=triton` runs the kernels in Triton's interpreter (TRITON_INTERPRET=1 is set
when unset): the Python glue around them is the GPU's, and the interpreter's own uint8 buffer copies are
left out. What is device-specific: the casts autocast inserts (`amp_*` precisions; `pure_*` avoid them)
and those inside a library's backward (CPU bf16 matmul backward casts through float32, shown under
`<autograd: AddmmBackward0>`).
"""

from __future__ import annotations

import collections
import os
import pathlib
import sys
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

if not torch.cuda.is_available():  # before triton is imported: kernels=triton on a CPU runs interpreted
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.profile_step import parse_step_args, prepare_step, step_parser, write_report  # noqa: E402
from orchestrator.measure import AMP_DTYPES, PURE_DTYPES, kernel_backend  # noqa: E402

COPY_OPS = ("_to_copy", "copy_", "clone")


def source_line() -> str:
    """`<autograd: Node>` inside a backward, else the innermost frame of this repository (not this
    script) as `path:line`."""
    node = torch._C._current_autograd_node()
    if node is not None:
        return f"<autograd: {node.name()}>"
    for frame in reversed(traceback.extract_stack()):
        path = pathlib.Path(frame.filename)
        if ROOT in path.parents and ".venv" not in path.parts and path.name != "copies.py":
            return f"{path.relative_to(ROOT)}:{frame.lineno}"
    return "<outside the repository>"


class CopyCounter(TorchDispatchMode):
    """Bytes and calls of the copy ops whose output has at least `min_numel` elements, by source line."""

    def __init__(self, min_numel: int):
        super().__init__()
        self.min_numel = min_numel
        self.bytes = collections.Counter()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if (
            name in COPY_OPS
            and isinstance(out, torch.Tensor)
            and out.dtype != torch.uint8
            and out.numel() >= self.min_numel
        ):
            key = (source_line(), name, f"{args[0].dtype}->{out.dtype}".replace("torch.", ""))
            self.bytes[key] += out.numel() * out.element_size()
            self.calls[key] += 1
        return out


def count_copies(config: dict) -> dict:
    """Copies of one step after a warm-up step, per layer, in activations of the compute dtype."""
    job, model, optimizer, ids = prepare_step(config)
    job.step(model, ids, optimizer)
    dtype = PURE_DTYPES.get(config["precision"]) or AMP_DTYPES.get(config["precision"]) or torch.float32
    activation = config["batch_size"] * config["seq_len"] * job.model_config.d_model
    counter = CopyCounter(activation // 4)
    with counter:
        job.step(model, ids, optimizer)
    unit = activation * dtype.itemsize * job.model_config.n_layers
    rows = [
        {
            "source": src,
            "op": op,
            "dtypes": dtypes,
            "calls": counter.calls[(src, op, dtypes)],
            "activations_per_layer": nbytes / unit,
        }
        for (src, op, dtypes), nbytes in counter.bytes.most_common()
    ]
    return {
        "activations_per_layer": sum(counter.bytes.values()) / unit,
        "calls": sum(counter.calls.values()),
        "rows": rows,
    }


def render(report: dict, top: int) -> str:
    lines = [f"{'act/layer':>9}  {'calls':>5}  source, op, dtypes", "-" * 80]
    lines += [
        f"{r['activations_per_layer']:9.2f}  {r['calls']:5d}  {r['source']}  {r['op']}  {r['dtypes']}"
        for r in report["rows"][:top]
    ]
    lines.append(f"total: {report['activations_per_layer']:.2f} activations per layer, {report['calls']} copies")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args, config = parse_step_args(step_parser(__doc__.splitlines()[0]), argv)
    with kernel_backend(config):
        report = count_copies(config)
    table = render(report, args.top)
    print(table)
    if args.out:
        write_report(args.out, report | {"config": config}, table)


if __name__ == "__main__":
    main()
