"""Helpers shared by the report's views: byte units, colours, row grouping (config, place, latest run per
config, variant knobs) and HTML rendering of tables and figures.

What belongs here: anything two or more dashboard modules use. The views (runs, memory, scaling,
kernel_bench, study) import from this module only, and report.py imports the views, so imports run one way:
common <- views <- report <- live.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from orchestrator.spec import stored_config

GIB = 2**30
#: trace colours of the figures that draw one line or marker set per model, implementation or series
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
#: the seed report's names of its configs: (d_model, n_layers) -> name
SEED_NAMES = {(4096, 32): "Maximum", (3072, 48): "Large", (2048, 64): "Deep", (2048, 48): "Standard"}
#: run fields that do not change what is measured: series are grouped without them
BOOKKEEPING = frozenset(
    {
        "model",
        "seq_len",
        "batch_size",
        "timeout_s",
        "seed",
        "fault",
        "num_cpus",
        "num_gpus",
        "resources",
        "isolate",
        "accelerator_type",
        "warmup_steps",
        "steps",
        "repeats",
    }
)

Knobs = tuple[tuple[str, str], ...]


def config_label(row: dict[str, Any]) -> str:
    cfg = row["config"]
    key = (cfg.get("d_model"), cfg.get("n_layers"))
    name = SEED_NAMES.get(key)
    base = f"d{key[0]} L{key[1]} N{cfg.get('seq_len')} B{cfg.get('batch_size')}"
    return f"{name} ({base})" if name else base


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.3f}"


def place(row: dict[str, Any]) -> tuple[str, str, str]:
    """Where and how a row was measured: (device, GPU name or "", mode); figures never mix places."""
    return row["device"], row.get("gpu_name") or "", row["mode"]


def by_place(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, str, str], list[dict[str, Any]]]]:
    """The rows grouped by :func:`place`, places sorted, rows in their order."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(place(r), []).append(r)
    return sorted(groups.items(), key=lambda item: item[0])


def is_training(row: dict[str, Any]) -> bool:
    return row["config"].get("job") == "train"


def knobs(row: dict[str, Any]) -> Knobs:
    """The config's knobs, run fields it lacks (stored before they existed) at their defaults."""
    config = stored_config(row["config"])
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in BOOKKEEPING))


def length(row: dict[str, Any]) -> int:
    return row["config"]["seq_len"]


def batch(row: dict[str, Any]) -> int:
    return row["config"].get("batch_size", 1)


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per config and place: the last one (rows come in batch order, so a rerun replaces)."""
    return list({(place(r), r["model"], knobs(r), length(r), batch(r)): r for r in rows}.values())


def variants(rows: list[dict[str, Any]]) -> list[str]:
    """Knobs that tell apart runs of one model at one shape (width, depth, length, batch): a sweep's
    variants, such as grad_checkpoint on and off, named in labels so they do not merge."""
    shapes: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        cfg = r["config"]
        shapes.setdefault((r["model"], cfg.get("d_model"), cfg.get("n_layers"), length(r), batch(r)), []).append(cfg)
    found = set()
    for configs in shapes.values():
        shared = set.intersection(*(set(c) for c in configs)) - BOOKKEEPING
        found |= {k for k in shared if len({repr(c[k]) for c in configs}) > 1}
    return sorted(found)


def knob_suffix(cfg: dict[str, Any], shown: list[str], sep: str = ", ") -> str:
    """`{sep}knob=value` for each variant knob the config has (rows from before a knob existed lack it)."""
    return "".join(f"{sep}{k}={cfg[k]}" for k in shown if k in cfg)


def render_table(
    header: list[str], rows: list[list[str]], row_attrs: list[dict[str, str]] | None = None, table_id: str | None = None
) -> str:
    """An escaped HTML table; `row_attrs` gives each body line its attributes (escaped too)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    attrs = ["".join(f' {k}="{html.escape(v)}"' for k, v in a.items()) for a in row_attrs or [{}] * len(rows)]
    body = "".join(
        f"<tr{a}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for a, row in zip(attrs, rows, strict=True)
    )
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f'<table class="pb-table"{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def figure_divs(figures: list[go.Figure]) -> str:
    return "".join(
        f'<div class="pb-figure">{fig.to_html(full_html=False, include_plotlyjs=False)}</div>' for fig in figures
    )
