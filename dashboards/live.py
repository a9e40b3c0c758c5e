"""The report's data, gathered for each build and each request: the database (runs with their
environments, training curves, studies), rows exported by `phasebench results export`, and kernel
benchmarks; served on loopback while batches run.

    phasebench dashboard serve [--db URL] [--port 8765] [--kernels FILE]   # http://127.0.0.1:8765/, refreshes itself
"""

from __future__ import annotations

from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .common import is_training
from .report import build_html


def attach_environments(store, rows: list[dict[str, Any]]) -> None:
    """Set each row's `environment` to the store's record of the machine that measured it (a skipped run:
    the run it reused), or None."""
    measured_by = {r["run_id"]: r.get("reused_run_id") or r["run_id"] for r in rows}
    found = store.environments(measured_by.values())
    for r in rows:
        r["environment"] = found.get(measured_by[r["run_id"]])


def database_data(db: str | None, batches: tuple[str, ...]) -> tuple[list[dict[str, Any]], dict, dict]:
    """(Rows with environments, training curves by run id, study figures by name) of `db`."""
    from orchestrator import api
    from orchestrator import study as studies
    from orchestrator.store.repository import Store

    from .study import run_context, study_figures

    rows = api.results(db, batch=batches)
    store = Store(db, create=False)
    try:
        curves = {r["run_id"]: store.metrics(r["run_id"]) for r in rows if is_training(r)}
        attach_environments(store, rows)
    finally:
        store.close()
    names = sorted({r["study_name"] for r in rows if r.get("study_name")})
    figures = {
        name: study_figures(
            *studies.load(name, db), where=run_context([r for r in rows if r.get("study_name") == name])
        )
        for name in names
    }
    return rows, curves, figures


def in_batches(row: dict[str, Any], batches: tuple[str, ...]) -> bool:
    return not batches or str(row["batch"]) in batches or str(row.get("batch_id")) in batches


def report_html(
    db: str | None,
    batches: Iterable[str] = (),
    refresh_s: int | None = None,
    exported: Iterable[dict[str, Any]] = (),
    kernels: Iterable[dict[str, Any]] = (),
    read_db: bool = True,
) -> tuple[str, int]:
    """(The HTML report, the number of runs in it): the runs of `db` (all batches, or those named; not
    read when `read_db` is false) with their training curves and studies, plus the `exported` rows
    (dashboards.sources.read_exports) the database does not hold, and the `kernels` results
    (dashboards.sources.read_kernels); `refresh_s` makes the page reload itself."""
    batches = tuple(batches)
    rows, curves, studies = database_data(db, batches) if read_db else ([], {}, {})
    known = {r["run_id"] for r in rows}
    rows += [r for r in exported if r["run_id"] not in known and in_batches(r, batches)]
    return build_html(rows, curves=curves, studies=studies, refresh_s=refresh_s, kernels=list(kernels)), len(rows)


def make_server(
    db: str | None,
    batches: Iterable[str] = (),
    host: str = "127.0.0.1",
    port: int = 8765,
    refresh_s: int = 10,
    kernels: Iterable[dict[str, Any]] = (),
) -> ThreadingHTTPServer:
    """An HTTP server whose `/` is the report, rebuilt from the database on every request (the kernel
    results, read once by the caller, are shown on every page)."""
    batches, kernels = tuple(batches), list(kernels)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            if self.path not in ("/", "/index.html"):
                self.send_error(404)
                return
            body = report_html(db, batches, refresh_s, kernels=kernels)[0].encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002  (quiet: no request log)
            return

    return ThreadingHTTPServer((host, port), Handler)
