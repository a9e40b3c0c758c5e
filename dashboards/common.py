"""Helpers shared by the report's views: byte units, colours, row grouping (config, place, latest run per
config, variant knobs), HTML rendering of tables and figures, and the data a report shows (:class:`RunSet`,
:class:`ReportData`), bounded whatever the number of stored runs.

What belongs here: anything two or more dashboard modules use. The views (runs, memory, scaling,
kernel_bench, study) import from this module only, report.py imports the views, gather.py reads the
database into this module's data, and live.py uses both, so imports run one way: common <- views <-
report <- live, and common <- gather <- live.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from orchestrator.spec import config_hash, stored_config
from orchestrator.store.schema import UNFINISHED

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

#: statuses whose row shows a measurement, preferred in this order: ok, and skipped (it shows the result of
#: the run it reused)
MEASURED = ("ok", "skipped")
#: the most runs the run table lists (the latest), each with its detail view
RECENT_RUNS = 500
#: the most configs the figures and the seed table draw (the most recently run)
CONFIGS = 2000
#: the most lines of any other table
TABLE_LINES = 500
#: the most training runs whose loss curves are drawn (those of the latest training configs)
CURVE_RUNS = 24

Knobs = tuple[tuple[str, str], ...]
#: renders figures into a view's HTML: inline (:func:`figure_divs`) or as slots the live page fills
Render = Callable[[list[go.Figure]], str]


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


def training_runs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if is_training(r)]


def curve_runs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training runs whose loss curves are drawn: the latest CURVE_RUNS."""
    return training_runs(rows)[-CURVE_RUNS:]


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


def stage(row: dict[str, Any]) -> str | None:
    """The stage the run reached (build, forward, ...); rows exported before the rename call it phase."""
    return row.get("stage", row.get("phase"))


def config_key(row: dict[str, Any]) -> str:
    """The row's config hash (computed from its config where a row lacks the stored one)."""
    return row.get("config_hash") or config_hash(row["config"])


def latest_per_config(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per config hash, in the rows' (batch) order: the config's last ok run, else its last skipped
    one (it shows a result from outside these rows), else its last finished one; unfinished runs are left
    out. gather.latest_config_ids is its SQL form."""
    picked: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] in UNFINISHED:
            continue
        key = config_key(r)
        if key not in picked or preference(r) <= preference(picked[key]):
            picked.pop(key, None)  # re-inserted last: the dict keeps the picked rows' order
            picked[key] = r
    return list(picked.values())


def preference(row: dict[str, Any]) -> int:
    """How :func:`latest_per_config` ranks a config's runs: ok first, then skipped, then the rest."""
    return MEASURED.index(row["status"]) if row["status"] in MEASURED else len(MEASURED)


def summary_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """What the run summary counts by: model, mode, device, status."""
    return row["model"], row["mode"], row["device"], row["status"]


@dataclass(frozen=True)
class RunSet:
    """What the views show of a set of runs, bounded whatever its size: the latest runs (the run table),
    the latest measured run of the most recent configs (figures and the seed table: :func:`latest_per_config`)
    and counts of all its runs by :func:`summary_key`."""

    recent: list[dict[str, Any]] = field(default_factory=list)  # at most RECENT_RUNS, in batch order
    configs: list[dict[str, Any]] = field(default_factory=list)  # at most CONFIGS, in batch order
    counts: Counter = field(default_factory=Counter)
    n_configs: int = 0  # configs with a finished run, before the cap
    batches: tuple[str, ...] = ()  # batch names, sorted

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @classmethod
    def of(cls, rows: Sequence[dict[str, Any]]) -> RunSet:
        """The set of rows held in memory (exported, or built by a test), in batch order."""
        rows = list(rows)
        configs = latest_per_config(rows)
        batches = tuple(sorted({str(r["batch"]) for r in rows}))
        return cls(rows[-RECENT_RUNS:], configs[-CONFIGS:], Counter(map(summary_key, rows)), len(configs), batches)

    def merged(self, later: RunSet) -> RunSet:
        """This set and `later` (runs after this set's) as one; configs neither set loaded count as distinct."""
        configs = latest_per_config(self.configs + later.configs)
        unloaded = self.n_configs - len(self.configs) + later.n_configs - len(later.configs)
        return RunSet(
            (self.recent + later.recent)[-RECENT_RUNS:],
            configs[-CONFIGS:],
            self.counts + later.counts,
            len(configs) + unloaded,
            tuple(sorted(set(self.batches) | set(later.batches))),
        )


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows: the runs, training curves by run id (Store.metrics), study figures by
    study name (dashboards.study) and kernel benchmark files (dashboards.sources.read_kernels)."""

    runs: RunSet
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    studies: dict[str, list[go.Figure]] = field(default_factory=dict)
    kernels: list[dict[str, Any]] = field(default_factory=list)


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


def shown_note(shown: int, total: int, what: str) -> str:
    """A line saying that a view shows only part of what there is ("Showing 500 of 100,000 runs"), or ""."""
    return f"<p>Showing {shown:,} of {total:,} {html.escape(what)}.</p>" if shown < total else ""


def figure_divs(figures: list[go.Figure]) -> str:
    return "".join(
        f'<div class="pb-figure">{fig.to_html(full_html=False, include_plotlyjs=False)}</div>' for fig in figures
    )
