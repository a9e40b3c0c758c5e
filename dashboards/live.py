"""The report from a live database: gathered per request, served on loopback while batches run.

    phasebench dashboard serve [--db URL] [--port 8765]     # http://127.0.0.1:8765/, refreshes itself
"""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable

from .report import build_html, is_training


def report_html(db: str | None, batches: Iterable[str] = (), refresh_s: int | None = None) -> tuple[str, int]:
    """(The HTML report, the number of runs in it) of `db` (all batches, or those named), with their
    training curves and studies; `refresh_s` makes the page reload itself."""
    from orchestrator import api
    from orchestrator import study as studies
    from orchestrator.store.repository import Store

    from .study import study_figures

    rows = api.results(db, batch=tuple(batches))
    store = Store(db, create=False)
    try:
        curves = {r["run_id"]: store.metrics(r["run_id"]) for r in rows if is_training(r)}
    finally:
        store.close()
    figures = {name: study_figures(*studies.load(name, db))
               for name in sorted({r["study_name"] for r in rows if r.get("study_name")})}
    return build_html(rows, curves=curves, studies=figures, refresh_s=refresh_s), len(rows)


def make_server(db: str | None, batches: Iterable[str] = (), host: str = "127.0.0.1", port: int = 8765,
                refresh_s: int = 10) -> ThreadingHTTPServer:
    """An HTTP server whose `/` is the report, rebuilt from the database on every request."""
    batches = tuple(batches)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            if self.path not in ("/", "/index.html"):
                self.send_error(404)
                return
            body = report_html(db, batches, refresh_s)[0].encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002  (quiet: no request log)
            return

    return ThreadingHTTPServer((host, port), Handler)
