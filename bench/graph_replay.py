"""The bare step, outside the orchestrator: eager steps and CUDA-graph replays of one config's step, timed
back to back (one synchronisation per loop, CUDA events), to hold the stored `execution` rows against.

    python bench/graph_replay.py --set model=phase7 d_model=1024 n_layers=19 n_heads=16 vocab_size=50257 \
        seq_len=2048 batch_size=1 precision=amp_bf16 grad_checkpoint=false device=cuda mode=train \
        --out results/execution/bare-phase7-train-2k

The step is the benchmark job's (`BenchmarkJob.step`: the forward in `inference`; forward, loss, backward
and the fused AdamW step in `train`), built as the job builds it; the graph is captured here with
`torch.cuda.graph` after side-stream warm-up, as a user would. Prints eager and replay ms per step and their
ratio; `--out` writes OUT.json (with the environment and this command) and OUT.txt.
"""
from __future__ import annotations

import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.profile_step import parse_step_args, prepare_step, step_parser, write_report  # noqa: E402


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


def main(argv: list[str] | None = None) -> None:
    parser = step_parser(__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args, config = parse_step_args(parser, argv)
    if config["device"] != "cuda":
        parser.error("device: a CUDA graph needs device=cuda")
    config = config | {"execution": "graph"}  # a capturable AdamW, as the stored graph runs use
    times = bare_times(config, args.warmup, args.steps)
    table = (f"{config['model']} {config['mode']} N={config['seq_len']} B={config['batch_size']}: "
             f"eager {times['eager_ms']:.3f} ms, graph replay {times['graph_ms']:.3f} ms "
             f"({times['eager_ms'] / times['graph_ms']:.2f}x)")
    print(table)
    if args.out:
        write_report(args.out, {"config": config, "warmup": args.warmup, "steps": args.steps} | times, table)


if __name__ == "__main__":
    main()
