"""Where a training (or inference) step spends its time: torch.profiler over a few steps of one config.

    python bench/profile_step.py --set model=phase8 d_model=2048 n_layers=16 n_heads=32 vocab_size=50257 \
        seq_len=16384 batch_size=2 precision=amp_bf16 device=cuda --out results/long-context/profile-phase8-16k

The config is any run config of a spec (validated the same way); the step is the benchmark job's own
(`orchestrator.measure.BenchmarkJob.step`: forward, loss, backward and the fused AdamW step in `train`),
replayed from a CUDA graph under `execution=graph`.
After `--warmup` steps, `--steps` steps are timed, then `--steps` more run under the profiler. Prints
the top `--top` by self time (CUDA kernels on a GPU, CPU operators otherwise) with their share of the
total, the wall time of an unprofiled step and, on a GPU, how busy the device was and how many kernels a
step launched. Writes `OUT.json` (rows + environment + config) and `OUT.txt` (the table); `--trace` also
writes a Chrome trace.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.environment import collect  # noqa: E402
from orchestrator.errors import ConfigError  # noqa: E402
from orchestrator.measure import BenchmarkJob, kernel_backend  # noqa: E402
from orchestrator.overrides import parse_settings  # noqa: E402
from orchestrator.spec import resolve_config  # noqa: E402


def step_parser(description: str) -> argparse.ArgumentParser:
    """The options every step script shares: --set KEY=VALUE (a run config), --top, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="run config fields")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=pathlib.Path, help="write OUT.json and OUT.txt")
    return parser


def parse_step_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, dict]:
    """(args, resolved run config; mode `train` unless set). A bad field exits 2 naming it."""
    args = parser.parse_args(argv)
    try:
        config, _ = resolve_config({"mode": "train"} | parse_settings(args.set))
    except ConfigError as exc:
        parser.error(str(exc))
    return args, config


def write_report(out: pathlib.Path, report: dict, table: str) -> None:
    """OUT.json (the report, with this command and the machine) and OUT.txt (the printed table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report = (
        {"command": " ".join([sys.executable, *sys.argv])}
        | report
        | {"environment": collect(report["config"]["device"])}
    )
    out.with_name(out.name + ".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    out.with_name(out.name + ".txt").write_text(table + "\n")


def prepare_step(config: dict):
    """(job, model, optimizer, ids): what `job.step(model, ids, optimizer)` runs on, built as the benchmark
    job builds it."""
    job = BenchmarkJob(config)
    job.prepare_device()
    model = job.build()
    model.train(config["mode"] != "inference")
    optimizer = job.make_optimizer(model)
    generator = torch.Generator().manual_seed(config["seed"])
    ids = torch.randint(
        0, job.model_config.vocab_size, (config["batch_size"], config["seq_len"]), generator=generator
    ).to(job.device)
    return job, model, optimizer, ids


def profile_steps(config: dict, warmup: int, steps: int):
    """Run the benchmark job's step `warmup` times, `steps` times timed without the profiler, then
    `steps` times under it. Returns (profile, device type, wall ms per unprofiled step)."""
    job, model, optimizer, ids = prepare_step(config)
    for _ in range(warmup):
        job.step(model, ids, optimizer)
    step = job.measured_step(model, ids, optimizer)  # a CUDA-graph replay under execution: graph
    job.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    job.synchronize()
    wall_ms = (time.perf_counter() - start) * 1e3 / steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if job.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        job.synchronize()
    return prof, job.device.type, wall_ms


def timed_events(prof, device_type: str) -> tuple[list, str]:
    """(events, time attribute): the device kernels on a GPU (an operator's device time is its kernels'
    time, so counting both would count it twice), the CPU operators otherwise."""
    if device_type == "cuda":
        events = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
        return [e for e in events if e.self_device_time_total > 0], "self_device_time_total"
    return [e for e in prof.key_averages() if e.self_cpu_time_total > 0], "self_cpu_time_total"


def top_rows(events: list, attr: str, top: int, steps: int) -> list[dict]:
    """The `top` events by time per step, with their share of all of them."""
    total = sum(getattr(e, attr) for e in events)
    ranked = sorted(events, key=lambda e: getattr(e, attr), reverse=True)
    return [
        {
            "name": e.key,
            "calls_per_step": e.count / steps,
            "ms_per_step": getattr(e, attr) / 1e3 / steps,
            "share": getattr(e, attr) / total,
        }
        for e in ranked[:top]
    ]


def render(rows: list[dict], total_ms: float, wall_ms: float, launches: float) -> str:
    lines = [f"{'share':>6}  {'ms/step':>9}  {'calls':>6}  name", "-" * 80]
    lines += [
        f"{r['share']:6.1%}  {r['ms_per_step']:9.3f}  {r['calls_per_step']:6.0f}  {r['name'][:120]}" for r in rows
    ]
    lines.append(f"time per step, all {'kernels' if launches else 'operators'}: {total_ms:.3f} ms")
    wall = f"wall time per step without the profiler: {wall_ms:.3f} ms"
    if launches:  # on a GPU: how much of the step the device is busy, and how many kernels it launches
        wall += f" (device busy {total_ms / wall_ms:.0%}); {launches:.0f} device kernels per step"
    lines.append(wall)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = step_parser(__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--trace", type=pathlib.Path, help="also write a Chrome trace here")
    args, config = parse_step_args(parser, argv)
    with kernel_backend(config):
        prof, device_type, wall_ms = profile_steps(config, args.warmup, args.steps)
    events, attr = timed_events(prof, device_type)
    total_ms = sum(getattr(e, attr) for e in events) / 1e3 / args.steps
    rows = top_rows(events, attr, args.top, args.steps)
    launches = sum(e.count for e in events) / args.steps if device_type == "cuda" else 0
    table = render(rows, total_ms, wall_ms, launches)
    print(table)
    if args.trace:
        prof.export_chrome_trace(str(args.trace))
    if args.out:
        write_report(
            args.out,
            {
                "config": config,
                "device_type": device_type,
                "steps": args.steps,
                "total_ms_per_step": total_ms,
                "wall_ms_per_step": wall_ms,
                "kernels_per_step": launches,
                "rows": rows,
            },
            table,
        )


if __name__ == "__main__":
    main()
