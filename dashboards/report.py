"""The first dashboard: the seed report's table reproduced, next to the report's own numbers.

`write_report(rows, path)` writes one self-contained HTML file (plotly.js embedded once, works offline).
Every user-supplied string (batch names, models, errors) is HTML-escaped.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from . import kernel_bench, memory, runs, scaling
from .common import GIB, by_place, config_label, figure_divs, gib, is_training, render_table

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
    """Grouped bars of weights / peak / activation per config and model: one figure per (device, mode)."""
    figures = []
    measured = [r for r in rows if not is_training(r) and r.get("weights_bytes") is not None]
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


def study_sections(studies: dict[str, list[go.Figure]]) -> str:
    if not studies:
        return (
            "<p>No studies yet: run <code>phasebench study create examples/study-pareto.yaml</code> and "
            "<code>phasebench study run study-pareto --trials 20</code>.</p>"
        )
    return "".join(f"<h3>{html.escape(name)}</h3>{figure_divs(figures)}" for name, figures in studies.items())


STYLE = """body{font-family:sans-serif;margin:2em} nav a{margin-right:1em}
.pb-table{border-collapse:collapse;font-size:13px}
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


def view_contents(
    rows: list[dict[str, Any]],
    curves: dict[str, list[dict[str, Any]]],
    studies: dict[str, list[go.Figure]],
    kernels: list[dict[str, Any]],
) -> dict[str, str]:
    """Each view's HTML by its key in VIEWS."""
    return {
        "runs": runs.runs_section(rows),
        "seed": SEED_NOTES + render_table(TABLE_HEADER, table_rows(rows)),
        "memory": figure_divs(memory_figures(rows)) or memory.EMPTY,
        "breakdown": memory.breakdown_section(rows),
        "scaling": scaling.scaling_section(rows),
        "kernels": kernel_bench.kernel_section(kernels),
        "training": figure_divs(curve_figures(rows, curves))
        or "<p>No training runs yet: run <code>phasebench run examples/train-stdlib.yaml</code>.</p>",
        "studies": study_sections(studies),
    }


def build_html(
    rows: list[dict[str, Any]],
    title: str = "phasebench report",
    curves: dict[str, list[dict[str, Any]]] | None = None,
    studies: dict[str, list[go.Figure]] | None = None,
    refresh_s: int | None = None,
    kernels: list[dict[str, Any]] | None = None,
) -> str:
    """The report; `curves` maps a training run's id to its metrics (orchestrator.store Store.metrics),
    `studies` a study name to its figures (dashboards.study), `kernels` holds bench/kernels.py results
    (dashboards.sources.read_kernels); `refresh_s` reloads the page (live view)."""
    batches = ", ".join(sorted({html.escape(str(r["batch"])) for r in rows})) or "none"
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    contents = view_contents(rows, curves or {}, studies or {}, kernels or [])
    nav = "".join(f'<a href="#pb-{key}">{name}</a>' for key, name in VIEWS)
    views = "".join(
        f'<section class="pb-view" id="pb-{key}"><h2>{name}</h2>{contents[key]}</section>' for key, name in VIEWS
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>{refresh}
<link rel="icon" href="data:,">
<script type="text/javascript">{get_plotlyjs()}</script>
<style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1><p>Batches: {batches}.</p><nav>{nav}</nav>
{views}</body></html>
"""


def write_report(
    rows: list[dict[str, Any]],
    path: str | Path,
    title: str = "phasebench report",
    curves: dict[str, list[dict[str, Any]]] | None = None,
    studies: dict[str, list[go.Figure]] | None = None,
    kernels: list[dict[str, Any]] | None = None,
) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True)
    path.write_text(build_html(rows, title, curves, studies, kernels=kernels), encoding="utf-8")
    return path
