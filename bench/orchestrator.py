"""Orchestrator overhead: queue many tiny CPU runs on a warm local Ray and time what phasebench adds.

    python bench/orchestrator.py                                  # 100 and 1000 runs, SQLite
    python bench/orchestrator.py --pg postgresql://u:p@host/db    # the same through PostgreSQL too
    python bench/orchestrator.py --isolate --isolation fork,process --runs 1,10,100   # a process per run

Each run is a 1-layer, d=16 transformer doing one inference step on 8 tokens (the job itself takes
about a millisecond), with `isolate: false` so that Ray reuses worker processes (tiny CPU runs do not
need a fresh process each); `--isolate` measures the default, a process of its own per run, forked by a
warm fork server or (`--isolation process`) a fresh Ray worker (orchestrator/worker.py). Per run:
latency = result stored - run submitted (driver clock); database write latency = time of each
`Store.record_result`. Prints a table and writes JSON with the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator import api  # noqa: E402
from orchestrator.environment import collect  # noqa: E402
from orchestrator.runner import init_ray  # noqa: E402
from orchestrator.store.engine import mask_url  # noqa: E402
from orchestrator.store.repository import Store  # noqa: E402
from orchestrator.worker import ISOLATION_ENV  # noqa: E402

TINY = {
    "model": "transformer",
    "vocab_size": 64,
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 2,
    "seq_len": 8,
    "batch_size": 1,
    "device": "cpu",
    "steps": 1,
    "warmup_steps": 0,
    "isolate": False,
    "precision": "fp32",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(db: str, runs: int, tag: str, isolate: bool, device: str) -> dict:
    writes: list[float] = []
    original = Store.record_result

    def timed(self, run_id, outcome):
        began = time.perf_counter()
        try:
            return original(self, run_id, outcome)
        finally:
            writes.append(time.perf_counter() - began)

    submitted: dict[str, float] = {}
    latencies: list[float] = []
    original_mark = Store.mark_running

    def mark(self, run_id):
        submitted[run_id] = time.perf_counter()
        return original_mark(self, run_id)

    def on_result(run, outcome):
        latencies.append(time.perf_counter() - submitted[run.id])

    Store.record_result, Store.mark_running = timed, mark
    try:
        spec = {
            "name": f"overhead-{tag}-{runs}",
            "defaults": TINY | {"isolate": isolate, "device": device},
            "grid": {"seed": list(range(runs))},
        }
        began = time.perf_counter()
        outcome = api.run(spec, db=db, rerun=True, on_result=on_result)
        wall = time.perf_counter() - began
    finally:
        Store.record_result, Store.mark_running = original, original_mark
    assert outcome.counts == {"ok": runs}, outcome.counts
    return {
        "db": tag,
        "isolate": isolate,
        "isolation": os.environ.get(ISOLATION_ENV, "fork") if isolate else None,
        "device": device,
        "runs": runs,
        "wall_s": wall,
        "runs_per_minute": 60 * runs / wall,
        "latency_median_s": statistics.median(latencies),
        "latency_p95_s": percentile(latencies, 0.95),
        "db_write_median_ms": 1e3 * statistics.median(writes),
        "db_write_p95_ms": 1e3 * percentile(writes, 0.95),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="100,1000", help="comma list of batch sizes")
    ap.add_argument("--pg", help="also measure through this PostgreSQL URL")
    ap.add_argument("--isolate", action="store_true", help="a process of its own per run (the default for real runs)")
    ap.add_argument("--isolation", default="fork", help="with --isolate: comma list of schemes, fork | process")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "orchestrator" / "orchestrator.json")
    args = ap.parse_args()
    init_ray()
    api.run(
        {"name": "warm-up", "defaults": TINY, "grid": {"seed": [0, 1]}},  # start the worker pool
        db=f"sqlite:///{tempfile.mkdtemp()}/warm.db",
    )
    targets = [("sqlite", f"sqlite:///{tempfile.mkdtemp()}/bench.db")] + ([("postgresql", args.pg)] if args.pg else [])
    print(
        f"{'db':10s} {'isolation':>9s} {'runs':>6s} {'wall s':>8s} {'runs/min':>9s} {'lat med s':>10s} "
        f"{'lat p95 s':>10s} {'write med ms':>13s} {'write p95 ms':>13s}",
        flush=True,
    )
    rows = []
    for scheme in args.isolation.split(",") if args.isolate else ["fork"]:
        os.environ[ISOLATION_ENV] = scheme  # read by the dispatcher at each batch
        for tag, url in targets:
            for n in args.runs.split(","):
                rows.append(r := measure(url, int(n), tag, args.isolate, args.device))
                print(
                    f"{r['db']:10s} {str(r['isolation'] or 'reused'):>9s} {r['runs']:6d} {r['wall_s']:8.1f} "
                    f"{r['runs_per_minute']:9.0f} {r['latency_median_s']:10.3f} {r['latency_p95_s']:10.3f} "
                    f"{r['db_write_median_ms']:13.2f} {r['db_write_p95_ms']:13.2f}",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "command": " ".join(["python", "bench/orchestrator.py", *sys.argv[1:]]).replace(
                    args.pg or "\0", mask_url(args.pg or "")
                ),
                "environment": collect(args.device),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
