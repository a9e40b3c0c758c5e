"""Dashboard scale: `phasebench dashboard build` over SQLite files of 1K, 10K and 100K stored runs.

    python bench/dashboard_scale.py                          # 1000, 10000 and 100000 runs
    python bench/dashboard_scale.py --runs 1000 --keep DIR   # keep the databases and the reports in DIR

Each database holds copies of the committed long-context rows (`results/long-context/long-context.json`:
real H200 results, with pending and running rows) and of its first environment record
(`env.json`), written with bulk SQL into a schema the store created. Copy i is its template's config with
`seed` = i, so every copy has its own config hash; every 50th finished copy is stored as out of memory
and every 10th as `skipped`, reusing the copy before it (same hash); 100 runs make one batch. The build
runs in a child process through the `phasebench` entry point (`phasebench.cli:main`): its wall time,
its peak RSS (the rusage `os.wait4` returns for it) and the size of the HTML it wrote. Prints a table and
writes JSON with the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from dashboards.common import stage  # noqa: E402
from orchestrator.environment import collect  # noqa: E402
from orchestrator.spec import config_hash  # noqa: E402
from orchestrator.store.repository import Store  # noqa: E402
from orchestrator.store.schema import METRIC_COLUMNS, Batch, Environment, Result, Run  # noqa: E402

SOURCE = ROOT / "results" / "long-context"
RUNS_PER_BATCH = 100
CHUNK = 5000  # rows per INSERT statement batch
ENTRY = "from phasebench.cli import main; main()"  # what the `phasebench` script runs
OOM_ERROR = "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (copy of a template row)"
START = datetime(2026, 12, 1, tzinfo=timezone.utc)


def templates() -> list[dict[str, Any]]:
    return json.loads((SOURCE / "long-context.json").read_text())


def environment_record() -> dict[str, Any]:
    record = json.loads((SOURCE / "env.json").read_text())[0]
    return {k: v for k, v in record.items() if k != "id"}


def status_of(i: int, template: dict[str, Any]) -> str:
    """The copy's status: the template's, out of memory for every 50th finished copy, skipped for every 10th."""
    if template["status"] != "ok":
        return template["status"]
    if i % 50 == 49:
        return "oom"
    return "skipped" if i % 10 == 9 else "ok"


def run_record(i: int, template: dict[str, Any], status: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The pb_runs row of copy i; a skipped copy repeats the run it reuses (config, hash, model, ...)."""
    finished = START + timedelta(seconds=10 * i)
    own = {
        "id": uuid.uuid4().hex,
        "batch_id": i // RUNS_PER_BATCH + 1,
        "index": i % RUNS_PER_BATCH,
        "status": status,
        "attempts": 0 if status in ("pending", "skipped") else 1,
        "created_at": START,
        "started_at": None if status in ("pending", "skipped") else finished - timedelta(seconds=9),
        "finished_at": None if status in ("pending", "running") else finished,
        "reused_run_id": previous["id"] if previous else None,
    }
    if previous:
        return previous | own
    config = template["config"] | {"seed": i}
    fields = ("model", "mode", "device", "params", "node_id")
    return own | {k: template[k] for k in fields} | {"config": config, "config_hash": config_hash(config)}


def result_record(run: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The pb_results row of a finished copy (an out-of-memory copy keeps only its weights)."""
    metrics = {k: template[k] for k in METRIC_COLUMNS}
    oom = run["status"] == "oom"
    if oom:
        metrics = {k: None for k in METRIC_COLUMNS} | {"params": template["params"]}
    return {
        "run_id": run["id"],
        "environment_id": 1,
        "status": run["status"],
        "stage": "forward" if oom else stage(template),
        "error": OOM_ERROR if oom else template["error"],
        "extra": {} if oom else template["extra"],
        "created_at": run["finished_at"],
        **metrics,
    }


def copies(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pb_runs rows, pb_results rows) of n copies of the templates."""
    rows = templates()
    runs, results = [], []
    for i in range(n):
        template = rows[i % len(rows)]
        status = status_of(i, template)
        previous = runs[-1] if status == "skipped" and runs[-1]["status"] == "ok" else None
        if status == "skipped" and previous is None:
            status = "ok"
        runs.append(run_record(i, template, status, previous))
        if status not in ("pending", "running", "skipped"):
            results.append(result_record(runs[-1], template))
    return runs, results


def fill(url: str, n: int) -> None:
    """A database at `url` (created by the store) holding n copies, in batches of RUNS_PER_BATCH."""
    Store(url).close()
    runs, results = copies(n)
    batches = [
        {
            "id": b + 1,
            "name": f"scale-{b + 1:05d}",
            "description": "",
            "spec": {},
            "status": "done",
            "created_at": START,
        }
        for b in range((n + RUNS_PER_BATCH - 1) // RUNS_PER_BATCH)
    ]
    store = Store(url, create=False)
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(Environment), [environment_record()])
            for table, rows in ((Batch, batches), (Run, runs), (Result, results)):
                for start in range(0, len(rows), CHUNK):
                    conn.execute(insert(table), rows[start : start + CHUNK])
    finally:
        store.close()


def build(url: str, out: Path) -> dict[str, Any]:
    """Run `phasebench dashboard build` in a child process: wall time, peak RSS, HTML size, runs reported."""
    command = [sys.executable, "-c", ENTRY, "dashboard", "build", "--db", url, "--out", str(out)]
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        began = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (Popen.wait would reap it first)
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0), stderr.seek(0)
        said, errors = stdout.read().strip(), stderr.read().strip()
    if child.returncode:
        raise SystemExit(f"dashboard build failed ({child.returncode}): {errors}")
    return {"wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024, "stdout": said}


def measure(n: int, folder: Path) -> dict[str, Any]:
    db = folder / f"scale-{n}.db"
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    began = time.perf_counter()
    fill(url, n)
    filled = time.perf_counter() - began
    out = folder / f"scale-{n}.html"
    return {
        "runs": n,
        "fill_s": filled,
        "db_bytes": db.stat().st_size,
        **build(url, out),
        "html_bytes": out.stat().st_size,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'runs':>8s} {'db MB':>8s} {'build s':>8s} {'peak RSS MB':>12s} {'HTML MB':>8s}  dashboard build said")
    for r in rows:
        print(
            f"{r['runs']:8,d} {r['db_bytes'] / 2**20:8.1f} {r['wall_s']:8.2f} {r['peak_rss_bytes'] / 2**20:12.0f} "
            f"{r['html_bytes'] / 2**20:8.2f}  {r['stdout']}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="1000,10000,100000", help="comma list of stored-run counts")
    ap.add_argument("--keep", type=Path, help="folder for the databases and reports (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "dashboard-scale" / "dashboard-scale.json")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pb-dashboard-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = [measure(int(n), folder) for n in args.runs.split(",")]
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join(["python", "bench/dashboard_scale.py", *sys.argv[1:]]),
        "environment": collect("cpu"),
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
