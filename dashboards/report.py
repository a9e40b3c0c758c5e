"""The report: every view of a set of runs (:class:`dashboards.common.ReportData`) in one HTML page.

`build_html(data)` embeds plotly.js (one self-contained file that works offline); given a `plotlyjs` src,
the page loads a shared copy by relative path instead (:func:`plotlyjs_src`, :func:`write_plotlyjs`).
`write_report(rows, path)` does it for rows held in memory. The views draw the latest measured run of each
config and list the latest runs (:class:`dashboards.common.RunSet`), so the page's size does not grow with
the number of stored runs. Every user-supplied string (batch names, models, errors) is HTML-escaped.
dashboards.live serves the same views with their figures updated in place.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from . import kernel_bench, memory, runs, scaling
from .common import (
    GIB,
    MEASURED,
    TABLE_LINES,
    Render,
    ReportData,
    RunSet,
    by_place,
    config_label,
    curve_runs,
    figure_divs,
    gib,
    is_training,
    latest,
    latest_per_config,
    render_table,
    shown_note,
    training_runs,
)

#: the seed report's numbers (GiB): (d_model, n_layers) -> model -> (weights, peak, activation)
SEED_REPORT = {
    (4096, 32): {"phase7-seed": (5.74, 5.81, 0.07), "phase8-seed": (5.75, 5.81, 0.06)},
    (3072, 48): {"phase7-seed": (4.81, 4.86, 0.06), "phase8-seed": (4.81, 4.86, 0.06)},
    (2048, 64): {"phase7-seed": (2.88, 2.93, 0.06), "phase8-seed": (2.88, 2.93, 0.06)},
    (2048, 48): {"phase7-seed": (2.22, 2.28, 0.06), "phase8-seed": (2.22, 2.28, 0.06)},
}
METRICS = (("weights_bytes", "weights"), ("peak_bytes", "peak"), ("activation_bytes", "activation"))


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One line per run: config, model, mode, device, status, weights/peak/activation GiB, report's numbers."""
    out = []
    for r in rows:
        cfg = r["config"]
        ours = [gib(r.get(key)) for key, _ in METRICS]
        theirs = SEED_REPORT.get((cfg.get("d_model"), cfg.get("n_layers")), {}).get(r["model"])
        report = "-" if theirs is None or r["mode"] != "inference" else " / ".join(f"{v:.2f}" for v in theirs)
        out.append(
            [
                config_label(r),
                r["model"],
                r["mode"],
                r["device"] + (f" ({r['gpu_name']})" if r.get("gpu_name") else ""),
                r["status"],
                f"{r['params']:,}" if r.get("params") is not None else "-",
                *ours,
                report,
            ]
        )
    return out


TABLE_HEADER = [
    "config",
    "model",
    "mode",
    "device",
    "status",
    "params",
    "weights GiB",
    "peak GiB",
    "activation GiB",
    "seed report (weights / peak / activation GiB)",
]


def memory_figures(rows: list[dict[str, Any]]) -> list[go.Figure]:
    """Grouped bars of weights / peak / activation per config and model, from the latest measured run of
    each config (a config run in several batches is one bar; configs that differ only in bookkeeping fields
    such as seed or steps are one config, as in the other views): one figure per (device, mode)."""
    figures = []
    measured = latest(
        [
            r
            for r in latest_per_config(rows)
            if r["status"] in MEASURED and not is_training(r) and r.get("weights_bytes") is not None
        ]
    )
    for (device, gpu, mode), subset in by_place(measured):
        fig = go.Figure()
        for model in sorted({r["model"] for r in subset}):
            for key, label in METRICS:
                picked = [r for r in subset if r["model"] == model and r.get(key) is not None]
                fig.add_bar(
                    name=html.escape(f"{model} {label}"),
                    x=[html.escape(config_label(r)) for r in picked],
                    y=[r[key] / GIB for r in picked],
                    legendgroup=model,
                )
        where = html.escape(gpu or device)
        fig.update_layout(
            title=f"Memory by config and model (GiB): mode {html.escape(mode)}, {where}",
            barmode="group",
            yaxis_title="GiB",
            xaxis_title="config",
            template="plotly_white",
        )
        figures.append(fig)
    return figures


def curve_figures(rows: list[dict[str, Any]], curves: dict[str, list[dict[str, Any]]]) -> list[go.Figure]:
    """Training and validation loss of every training run, by tokens seen and by wall time."""
    trained = [r for r in rows if is_training(r) and curves.get(r["run_id"])]
    if not trained:
        return []
    figures = []
    where = html.escape(", ".join(sorted({r.get("gpu_name") or r["device"] for r in trained})))
    modes = html.escape(", ".join(sorted({r["mode"] for r in trained})))
    for x_key, x_title in (("tokens", "tokens seen"), ("elapsed_s", "wall time (s, training steps only)")):
        fig = go.Figure()
        for r in trained:
            label = html.escape(f"{r['model']} #{r['index']} ({r['batch']}, {r['device']})")
            train = [m for m in curves[r["run_id"]] if m["kind"] == "train" and m["loss"] is not None]
            evals = [m for m in curves[r["run_id"]] if m["kind"] == "eval"]
            fig.add_scatter(
                x=[m[x_key] for m in train],
                y=[m["loss"] for m in train],
                mode="lines",
                name=f"{label} train",
                legendgroup=r["run_id"],
            )
            fig.add_scatter(
                x=[m[x_key] for m in evals],
                y=[m["val_loss"] for m in evals],
                mode="lines+markers",
                name=f"{label} validation",
                legendgroup=r["run_id"],
            )
        fig.update_layout(
            title=f"Loss (nats per token) by {x_title}: training runs, mode {modes}, {where}",
            xaxis_title=x_title,
            yaxis_title="cross-entropy (nats/token)",
            template="plotly_white",
        )
        figures.append(fig)
    return figures


def study_sections(studies: dict[str, list[go.Figure]], render: Render) -> str:
    if not studies:
        return (
            "<p>No studies yet: run <code>phasebench study create examples/study-pareto.yaml</code> and "
            "<code>phasebench study run study-pareto --trials 20</code>.</p>"
        )
    return "".join(f"<h3>{html.escape(name)}</h3>{render(figures)}" for name, figures in studies.items())


def seed_section(runs: RunSet) -> str:
    """The seed-report table: a line per config (its latest measured run), the latest TABLE_LINES."""
    lines = table_rows(runs.configs[-TABLE_LINES:])
    return (
        SEED_NOTES + shown_note(len(lines), runs.n_configs, "configs (the latest)") + render_table(TABLE_HEADER, lines)
    )


def training_section(data: ReportData, render: Render) -> str:
    """Loss curves of the latest training configs (:func:`dashboards.common.curve_runs`), or what to run."""
    shown = curve_runs(data.runs.configs)
    figures = render(curve_figures(shown, data.curves))
    if not figures:
        return "<p>No training runs yet: run <code>phasebench run examples/train-stdlib.yaml</code>.</p>"
    return shown_note(len(shown), len(training_runs(data.runs.configs)), "training configs (the latest)") + figures


STYLE = """body{font-family:sans-serif;margin:2em} nav a{margin-right:1em}
.pb-table{border-collapse:collapse;font-size:13px;margin-bottom:.8em}
.pb-table td,.pb-table th{border:1px solid #ccc;padding:3px 6px;text-align:right}
#pb-run-table tbody tr{cursor:pointer} #pb-run-table tbody tr:hover{background:#eef2ff}
#pb-run-table tbody tr.pb-selected{background:#d6e0ff}
.pb-filters label{margin-right:1em} .pb-detail{border:1px solid #99a;padding:0 1em 1em;margin-top:1em}
.pb-detail-tables{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start} .pb-detail .pb-table td{text-align:left}
.pb-detail pre{white-space:pre-wrap;background:#fee;padding:.5em}"""
VIEWS = (
    ("runs", "Runs"),
    ("seed", "Seed-report table"),
    ("memory", "Memory"),
    ("breakdown", "Memory breakdown"),
    ("scaling", "Sequence-length scaling"),
    ("kernels", "Kernel benchmarks"),
    ("training", "Training"),
    ("studies", "Studies"),
)
SEED_NOTES = (
    "<p>Memory in GiB (2<sup>30</sup> bytes); activation = peak - static (inference: peak - weights). The "
    "seed report's numbers (RTX 3080 Laptop, inference, shared process) are shown beside the inference "
    "rows.</p>"
)
#: the most batch names the page's header lists
BATCH_NAMES = 20


def view_contents(data: ReportData, render: Render = figure_divs) -> dict[str, str]:
    """Each view's HTML by its key in VIEWS; `render` puts the figures in it."""
    configs = data.runs.configs
    return {
        "runs": runs.runs_section(data.runs),
        "seed": seed_section(data.runs),
        "memory": render(memory_figures(configs)) or memory.EMPTY,
        "breakdown": memory.breakdown_section(configs, render),
        "scaling": scaling.scaling_section(configs, render),
        "kernels": kernel_bench.kernel_section(data.kernels, render),
        "training": training_section(data, render),
        "studies": study_sections(data.studies, render),
    }


def batches_line(batches: tuple[str, ...]) -> str:
    names = ", ".join(html.escape(b) for b in batches[:BATCH_NAMES]) or "none"
    more = f" and {len(batches) - BATCH_NAMES:,} more" if len(batches) > BATCH_NAMES else ""
    return f"<p>Batches: {names}{more}.</p>"


def plotly_script(src: str | None) -> str:
    """plotly.js embedded, or loaded from `src` (a URL relative to the page)."""
    if src is None:
        return f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return f'<script src="{html.escape(src)}"></script>'


def document(title: str, batches: tuple[str, ...], contents: dict[str, str], plotly: str, tail: str = "") -> str:
    """The page: head (`plotly`: its plotly.js script), the batches, navigation, a section per view, `tail`."""
    nav = "".join(f'<a href="#pb-{key}">{name}</a>' for key, name in VIEWS)
    views = "".join(
        f'<section class="pb-view" id="pb-{key}"><h2>{name}</h2><div id="pb-{key}-body">{contents[key]}</div></section>'
        for key, name in VIEWS
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
{plotly}
<style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>{batches_line(batches)}<nav>{nav}</nav>
{views}{tail}</body></html>
"""


def build_html(data: ReportData, title: str = "phasebench report", plotlyjs: str | None = None) -> str:
    """The report of `data`, plotly.js embedded, or loaded from `plotlyjs` (:func:`plotlyjs_src`)."""
    return document(title, data.runs.batches, view_contents(data), plotly_script(plotlyjs))


def plotlyjs_src(plotlyjs: str | Path, report: str | Path) -> str:
    """How a report written at `report` loads the shared plotly.js at `plotlyjs`: by its path relative to the
    report's folder, so that the report opens from disk (and the pair can move together)."""
    return quote(Path(os.path.relpath(Path(plotlyjs).resolve(), Path(report).resolve().parent)).as_posix())


def write_plotlyjs(path: str | Path) -> Path:
    """The installed plotly's plotly.js at `path` (its folder created), rewritten only where it differs."""
    path, text = Path(path), get_plotlyjs()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def write_report(
    rows: list[dict[str, Any]],
    path: str | Path,
    title: str = "phasebench report",
    curves: dict[str, list[dict[str, Any]]] | None = None,
    studies: dict[str, list[go.Figure]] | None = None,
    kernels: list[dict[str, Any]] | None = None,
    plotlyjs: str | Path | None = None,
) -> Path:
    """The report of `rows` (in batch order) at `path`: self-contained, or loading the plotly.js written to
    `plotlyjs`."""
    path = Path(path)
    data = ReportData(RunSet.of(rows), curves or {}, studies or {}, kernels or [])
    src = None
    if plotlyjs is not None:
        src = plotlyjs_src(write_plotlyjs(plotlyjs), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_html(data, title, src), encoding="utf-8")
    return path
