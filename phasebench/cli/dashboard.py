"""`phasebench dashboard`: Plotly reports of stored results (the dashboards package loads inside the verbs)."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.errors import UserError
from orchestrator.store.repository import Store

from .common import db_option, emit, quiet_optuna

kernels_option = click.option(
    "--kernels", multiple=True, metavar="FILE", help="bench/kernels.py JSON to show in the kernel view (repeatable)."
)
batch_option = click.option("--batch", multiple=True, help="Batch name or id (repeatable; default all).")


@click.group()
def dashboard() -> None:
    """Plotly dashboards of stored results."""
    quiet_optuna()  # the study figures build in-memory studies, each announced at INFO


@dashboard.command("build")
@db_option
@click.option(
    "--from-export",
    "exports",
    multiple=True,
    metavar="FILE",
    help="Rows written by `results export --format json` (repeatable); the database is then read "
    "only when --db (or PHASEBENCH_DB) is given too.",
)
@kernels_option
@batch_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option(
    "--plotlyjs",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write plotly.js to FILE (only when it differs) and load it from there by a relative path instead "
    "of embedding it (reports that share one copy).",
)
def dashboard_build(db, exports, kernels, batch, out, plotlyjs) -> None:
    """Write an HTML report that works offline: self-contained (plotly.js embedded) unless --plotlyjs."""
    from dashboards.live import report_html
    from dashboards.report import plotlyjs_src, write_plotlyjs
    from dashboards.sources import read_exports, read_kernels

    exported, benchmarks = read_exports(exports), read_kernels(kernels)
    src = plotlyjs_src(plotlyjs, out) if plotlyjs else None
    text, n_runs = report_html(
        db, batch, exported=exported, kernels=benchmarks, read_db=bool(db or not exports), plotlyjs=src
    )
    if plotlyjs:  # written only once the report is built: a failed build writes nothing
        try:
            write_plotlyjs(plotlyjs)
        except OSError as exc:
            raise UserError(f"--plotlyjs: cannot write {plotlyjs}: {exc.strerror}") from None
    emit(text, out, make_folder=True)
    click.echo(f"wrote {Path(out)} ({n_runs} runs)")


@dashboard.command("serve")
@db_option
@kernels_option
@batch_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--refresh",
    "refresh_s",
    default=10,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="Seconds between the page's checks for new results (figures update in place).",
)
def dashboard_serve(db, kernels, batch, host, port, refresh_s) -> None:
    """Serve the report while batches and studies run: the page is served once, its figures update in
    place as runs finish, and the report is rebuilt only when the database changes."""
    from dashboards.live import make_server
    from dashboards.sources import read_kernels

    benchmarks = read_kernels(kernels)  # read once: a bad file is a one-line error now
    Store(db, create=False).close()  # a missing or old database is a one-line error now, not per request
    try:
        server = make_server(db, batch, host, port, refresh_s, kernels=benchmarks)
    except OSError as exc:
        raise UserError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"serving http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
