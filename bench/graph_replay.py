"""The bare step, outside the orchestrator: eager steps and CUDA-graph replays of one config's step, timed
back to back (one synchronisation per loop, CUDA events), to hold the stored `execution` rows against.

    python bench/graph_replay.py --set model=phase7 d_model=1024 n_layers=19 n_heads=16 vocab_size=50257 \
        batch_size=1 precision=amp_bf16 grad_checkpoint=false device=cuda \
        --sweep mode=inference,train seq_len=512,2048 --out results/execution/bare-phase7

The step is the benchmark job's (`BenchmarkJob.step`: the forward in `inference`; forward, loss, backward
and the fused AdamW step in `train`), built as the job builds it; the graph is captured here with
`torch.cuda.graph` after side-stream warm-up, as a user would. `--sweep KEY=V1,V2 ...` measures every
combination of the listed values in this one process, one config after another. Prints eager and replay ms
per step and their ratio; `--out` writes OUT.json (with the environment and this command) and OUT.txt.
"""

from __future__ import annotations

import gc
import itertools
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.profile_step import prepare_step, step_parser, write_report  # noqa: E402
from orchestrator.errors import ConfigError  # noqa: E402
from orchestrator.measure import kernel_backend  # noqa: E402
from orchestrator.overrides import parse_settings  # noqa: E402
from orchestrator.spec import resolve_config  # noqa: E402
from orchestrator.yamlfile import parse_value  # noqa: E402


def per_step_ms(fn, steps: int) -> float:
    """Milliseconds per call of fn over `steps` calls launched back to back (CUDA events)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def bare_times(config: dict, warmup: int, steps: int) -> dict:
    """{"eager_ms", "graph_ms"} per step for `config` (a resolved run config on a CUDA device)."""
    job, model, optimizer, ids = prepare_step(config)
    if optimizer is not None:
        job.step(model, ids, optimizer)  # AdamW's state, before any capture
    for _ in range(warmup):
        job.step(model, ids, optimizer)
    eager_ms = per_step_ms(lambda: job.step(model, ids, optimizer), steps)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            job.step(model, ids, optimizer)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        job.step(model, ids, optimizer)  # sets the gradients to None first: the capture allocates them
    graph.replay()
    graph_ms = per_step_ms(graph.replay, steps)
    return {"eager_ms": eager_ms, "graph_ms": graph_ms}


def sweep_configs(parser, args) -> list[dict]:
    """One resolved config (mode `train` unless set, `execution: graph`) per combination of `--sweep` values."""
    base = {"mode": "train"} | parse_settings(args.set)
    pairs = (pair.partition("=") for pair in args.sweep)
    axes = {key: [parse_value(v) for v in values.split(",")] for key, _, values in pairs}
    configs = []
    for combo in itertools.product(*axes.values()):
        fields = dict(zip(axes, combo, strict=True))
        raw = base | fields | {"execution": "graph"}  # a capturable AdamW, as the stored graph runs use
        try:
            configs.append(resolve_config(raw)[0])
        except ConfigError as exc:
            parser.error(str(exc))
    if any(config["device"] != "cuda" for config in configs):
        parser.error("device: a CUDA graph needs device=cuda")
    return configs


def build_parser():
    parser = step_parser(__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sweep", nargs="+", default=[], metavar="KEY=V1,V2", help="configs to measure in turn")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    rows, lines = [], []
    for config in sweep_configs(parser, args):
        with kernel_backend(config):
            times = bare_times(config, args.warmup, args.steps)
        lines.append(
            f"{config['model']} {config['mode']} N={config['seq_len']} B={config['batch_size']}: "
            f"eager {times['eager_ms']:.3f} ms, graph replay {times['graph_ms']:.3f} ms "
            f"({times['eager_ms'] / times['graph_ms']:.2f}x)"
        )
        print(lines[-1], flush=True)
        rows.append({"config": config} | times)
        gc.collect()
        torch.cuda.empty_cache()
    if args.out:
        write_report(
            args.out,
            {"config": rows[0]["config"], "warmup": args.warmup, "steps": args.steps, "rows": rows},
            "\n".join(lines),
        )


if __name__ == "__main__":
    main()
