"""The report built for `phasebench dashboard build`, and served live by `dashboard serve` while batches run:

    phasebench dashboard serve [--db URL] [--port 8765] [--refresh 10] [--kernels FILE]   # http://127.0.0.1:8765/

The live page (Starlette, on uvicorn, loopback by default) is sent once, with its figures as data that
its script draws. Every `refresh_s` seconds the script asks `figures.json?since=MARKER`; when the database
has changed, the answer holds every view's HTML and figure, and the page redraws the figures in place
(Plotly.react) and replaces only the views whose HTML changed. The server reads the database and builds
the views again only when its change marker (:func:`dashboards.gather.change_marker`) moves.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.utils import PlotlyJSONEncoder

from orchestrator.store.repository import Store

from .common import ReportData
from .gather import change_marker, database_data, gather
from .report import build_html, document, view_contents

NO_STORE = {"Cache-Control": "no-store"}
#: the page's script: draws the figures it came with, then polls for changes (PERIOD_MS between polls)
LIVE_SCRIPT = """
(function () {
  var shown = JSON.parse(document.getElementById("pb-live-data").textContent);
  function draw(figures) {
    figures.forEach(function (figure, i) {
      var slot = document.getElementById("pb-plot-" + i);
      if (slot) { Plotly.react(slot, figure.data, figure.layout, {responsive: true}); }
    });
  }
  function update(page) {
    if (page.marker === shown.marker) { return; }
    Object.keys(page.views).forEach(function (key) {
      if (page.versions[key] === shown.versions[key]) { return; }
      var body = document.getElementById("pb-" + key + "-body");
      body.querySelectorAll(".js-plotly-plot").forEach(function (plot) { Plotly.purge(plot); });
      body.innerHTML = page.views[key];
      if (key === "runs" && window.pbRuns) { window.pbRuns(); }
    });
    shown = page;
    draw(page.figures);
  }
  function poll() {
    fetch("figures.json?since=" + encodeURIComponent(shown.marker), {cache: "no-store"})
      .then(function (response) { return response.ok ? response.json() : shown; })
      .then(update, function () { /* the server is away: ask again next time */ })
      .then(function () { setTimeout(poll, PERIOD_MS); });
  }
  draw(shown.figures);
  setTimeout(poll, PERIOD_MS);
})();
"""


def report_html(
    db: str | None,
    batches: Iterable[str] = (),
    exported: Iterable[dict[str, Any]] = (),
    kernels: Iterable[dict[str, Any]] = (),
    read_db: bool = True,
    plotlyjs: str | None = None,
) -> tuple[str, int]:
    """(The HTML report, the number of runs in it), of :func:`dashboards.gather.gather`'s data; plotly.js
    embedded, or loaded from `plotlyjs` (:func:`dashboards.report.plotlyjs_src`)."""
    data = gather(db, batches, exported, kernels, read_db)
    return build_html(data, plotlyjs=plotlyjs), data.runs.total


class FigureSlots:
    """Renders figures as empty, numbered slots and keeps them, in page order, for the live page's data."""

    def __init__(self) -> None:
        self.figures: list[go.Figure] = []

    def __call__(self, figures: list[go.Figure]) -> str:
        first = len(self.figures)
        self.figures += figures
        return "".join(
            f'<div class="pb-figure"><div class="pb-plot" id="pb-plot-{i}"></div></div>'
            for i in range(first, len(self.figures))
        )


@dataclass(frozen=True)
class LivePage:
    """The live page and its update (figures.json) at one change marker."""

    marker: str
    page: str
    update: str


def as_json(value: Any) -> str:
    """JSON that can also stand inside a <script> element: no "<" in it (strings hold it as \\u003c)."""
    return json.dumps(value, cls=PlotlyJSONEncoder, separators=(",", ":")).replace("<", "\\u003c")


def live_page(data: ReportData, marker: str, refresh_s: int) -> LivePage:
    """The page (plotly.js from ./plotly.min.js, figures in slots drawn from the embedded data) and the update."""
    slots = FigureSlots()
    views = view_contents(data, render=slots)
    shown = {
        "marker": marker,
        "versions": {key: hashlib.sha256(view.encode()).hexdigest()[:16] for key, view in views.items()},
        "figures": [figure.to_plotly_json() for figure in slots.figures],
    }
    script = LIVE_SCRIPT.replace("PERIOD_MS", str(int(refresh_s * 1000)))
    tail = f'<script type="application/json" id="pb-live-data">{as_json(shown)}</script><script>{script}</script>'
    page = document("phasebench report", data.runs.batches, views, '<script src="plotly.min.js"></script>', tail)
    return LivePage(marker, page, as_json(shown | {"views": views}))


class LiveReport:
    """The live page of a database, built again only when its change marker moves (one build at a time)."""

    def __init__(self, db: str | None, batches: tuple[str, ...], kernels: list[dict[str, Any]], refresh_s: int):
        self.db, self.batches, self.kernels, self.refresh_s = db, batches, kernels, refresh_s
        self.lock = threading.Lock()
        self.store = None  # opened at the first request
        self.built: LivePage | None = None

    def current(self) -> LivePage:
        with self.lock:
            self.store = self.store or Store(self.db, create=False)
            marker = change_marker(self.store)
            if self.built is None or self.built.marker != marker:
                data = database_data(self.store, self.db, self.batches, self.kernels)
                self.built = live_page(data, marker, self.refresh_s)
            return self.built

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def live_app(report: LiveReport):
    """The Starlette app: the page at / (and /index.html), its update at /figures.json, plotly.js; GET and
    HEAD, nothing else."""
    from plotly.offline import get_plotlyjs
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    def page(request) -> Response:
        return HTMLResponse(report.current().page, headers=NO_STORE)

    def figures(request) -> Response:
        built = report.current()
        unchanged = request.query_params.get("since") == built.marker
        body = json.dumps({"marker": built.marker}) if unchanged else built.update
        return Response(body, media_type="application/json", headers=NO_STORE)

    def plotly(request) -> Response:
        return Response(get_plotlyjs(), media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/index.html", page),
            Route("/figures.json", figures),
            Route("/plotly.min.js", plotly),
        ]
    )


class LiveServer:
    """uvicorn serving an ASGI app on a socket bound at construction (a busy port fails there, as OSError),
    with http.server's interface: server_address, serve_forever, shutdown (from another thread),
    server_close."""

    def __init__(self, app, host: str, port: int, on_close=lambda: None):
        import uvicorn

        self.socket = socket.create_server((host, port))
        self.server_address = self.socket.getsockname()[:2]
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off")
        self.uvicorn = uvicorn.Server(config)
        self.stopped = threading.Event()
        self.on_close = on_close

    def serve_forever(self) -> None:
        """Serve until shutdown() or a signal (in the main thread: Ctrl-C, raised again once stopped)."""
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True
        self.stopped.wait()

    def server_close(self) -> None:
        self.socket.close()
        self.on_close()


def make_server(
    db: str | None,
    batches: Iterable[str] = (),
    host: str = "127.0.0.1",
    port: int = 8765,
    refresh_s: int = 10,
    kernels: Iterable[dict[str, Any]] = (),
) -> LiveServer:
    """The live page of `db` (all batches, or those named) on host:port, its figures refreshed every
    `refresh_s` seconds; the kernel results, read once by the caller, are shown too."""
    report = LiveReport(db, tuple(str(b) for b in batches), list(kernels), refresh_s)
    return LiveServer(live_app(report), host, port, on_close=report.close)
