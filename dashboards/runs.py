"""The runs view: every run counted by model, mode, device and status, then the run table: one line per
run, the latest RECENT_RUNS runs, filtered in the page by GPU, device, mode, model, batch and status, and a
detail view per run (click or Enter on a line): status and error, config, environment, every metric.

The filters are plain JavaScript embedded in the page (nothing from the network; works from disk); they
compare the lines' `data-*` attributes with the chosen values and remember the choice for the session,
so a reload, or the live page replacing the view, keeps it (`window.pbRuns` sets the view up again).
The details are rendered here, escaped, and only shown by the script.
"""

from __future__ import annotations

import html
import json
from typing import Any

from orchestrator.legacy import stored_execution
from orchestrator.store.schema import METRIC_COLUMNS, RUN_STATUSES

from .common import TABLE_LINES, RunSet, config_label, gib, render_table, shown_note, stage

FILTERS = (
    ("gpu", "GPU"),
    ("device", "device"),
    ("mode", "mode"),
    ("execution", "execution"),
    ("model", "model"),
    ("batch", "batch"),
    ("status", "status"),
)
HEADER = ["batch", "#", "model", "mode", "execution", "device", "GPU", "config", "status", "peak GiB", "tokens/s"]
RUN_KEYS = (
    "run_id",
    "batch",
    "batch_id",
    "index",
    "status",
    "stage",
    "attempts",
    "config_hash",
    "model_version",
    "execution",
    "reused_run_id",
    "node_id",
    "study_name",
    "trial_number",
    "started_at",
    "finished_at",
    "tags",
    "note",
)
ENV_KEYS = (
    "gpu_name",
    "gpu_count",
    "driver",
    "cuda",
    "torch",
    "triton",
    "python",
    "hostname",
    "git_commit",
    "git_dirty",
)
ROW_ENV_KEYS = ("gpu_name", "hostname", "git_commit")  # what a result row carries without the store
EMPTY = "<p>No runs yet: run <code>phasebench run examples/quickstart.yaml</code>.</p>"

SCRIPT = """
window.pbRuns = function () {
  var table = document.getElementById("pb-run-table");
  if (!table) { return; }
  var lines = Array.prototype.slice.call(table.tBodies[0].rows);
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var details = Array.prototype.slice.call(document.querySelectorAll(".pb-detail"));
  var count = document.getElementById("pb-run-count");
  var state = {filters: {}, run: null};

  function remember() {
    try { sessionStorage.setItem("pb-runs", JSON.stringify(state)); } catch (e) { /* storage off: no memory */ }
  }
  function recalled() {
    try { return JSON.parse(sessionStorage.getItem("pb-runs")) || state; } catch (e) { return state; }
  }
  function matches(line, filters) {
    return Object.keys(filters).every(function (key) {
      return !filters[key] || line.getAttribute("data-" + key) === filters[key];
    });
  }
  function applyFilters() {
    var shown = 0;
    selects.forEach(function (s) { state.filters[s.getAttribute("data-filter")] = s.value; });
    lines.forEach(function (line) {
      line.hidden = !matches(line, state.filters);
      shown += line.hidden ? 0 : 1;
    });
    count.textContent = shown + " of " + lines.length + " runs shown";
    remember();
  }
  function showDetail(run) {
    state.run = run;
    details.forEach(function (d) { d.hidden = d.getAttribute("data-run") !== run; });
    lines.forEach(function (line) { line.classList.toggle("pb-selected", line.getAttribute("data-run") === run); });
    remember();
  }
  function lineOf(event) {
    var line = event.target.closest("tr");
    return line && line.parentNode === table.tBodies[0] ? line : null;
  }
  table.tBodies[0].addEventListener("click", function (event) {
    var line = lineOf(event);
    if (line) { showDetail(line.getAttribute("data-run")); }
  });
  table.tBodies[0].addEventListener("keydown", function (event) {
    var line = lineOf(event);
    if (line && event.key === "Enter") { showDetail(line.getAttribute("data-run")); }
  });
  selects.forEach(function (s) { s.addEventListener("change", applyFilters); });
  var saved = recalled();
  selects.forEach(function (s) {
    var value = (saved.filters || {})[s.getAttribute("data-filter")];
    if (value && Array.prototype.some.call(s.options, function (o) { return o.value === value; })) { s.value = value; }
  });
  applyFilters();
  if (saved.run !== null && saved.run !== undefined) { showDetail(String(saved.run)); }
};
window.pbRuns();
"""


def filter_value(row: dict[str, Any], key: str) -> str:
    """The value a filter compares (the GPU of a CPU run is "none")."""
    if key == "gpu":
        return row.get("gpu_name") or "none"
    return execution(row) if key == "execution" else str(row[key])


def filter_options(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {key: sorted({filter_value(r, key) for r in rows}) for key, _ in FILTERS}


def row_attributes(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"data-run": str(i), "tabindex": "0", **{f"data-{key}": filter_value(r, key) for key, _ in FILTERS}}
        for i, r in enumerate(rows)
    ]


def run_line(row: dict[str, Any]) -> list[str]:
    tokens = row.get("tokens_per_s")
    return [
        str(row["batch"]),
        str(row.get("index", "-")),
        row["model"],
        row["mode"],
        execution(row),
        row["device"],
        row.get("gpu_name") or "-",
        config_label(row),
        row["status"],
        gib(row.get("peak_bytes")),
        "-" if tokens is None else f"{tokens:,.0f}",
    ]


def execution(row: dict[str, Any]) -> str:
    """The row's execution mode; rows exported before the field existed say it in their config."""
    return row.get("execution") or stored_execution(row.get("config", {}))


def filter_controls(rows: list[dict[str, Any]]) -> str:
    options = filter_options(rows)
    controls = "".join(
        f'<label>{label} <select data-filter="{key}"><option value="">all</option>'
        + "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in options[key])
        + "</select></label> "
        for key, label in FILTERS
    )
    return f'<div class="pb-filters">{controls}<span id="pb-run-count"></span></div>'


def shown(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    if key.endswith("_bytes") and isinstance(value, int):
        return f"{value:,} B ({gib(value)} GiB)"
    return str(value)


def field_table(title: str, fields: dict[str, Any]) -> str:
    table = render_table(["field", "value"], [[k, shown(k, v)] for k, v in fields.items()])
    return f"<div><h4>{html.escape(title)}</h4>{table}</div>"


def environment_of(row: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(The run's environment, a note on where it comes from): the store's record when gathered from a
    database, else the few fields a result row carries."""
    env = row.get("environment")
    if env:
        return {k: env.get(k) for k in ENV_KEYS} | (env.get("details") or {}), "from the result database"
    return (
        {k: row.get(k) for k in ROW_ENV_KEYS},
        "from the result row only: exports carry gpu_name, hostname and git_commit, not driver, torch or triton",
    )


def detail(row: dict[str, Any], run: int) -> str:
    """The detail view of one run (hidden until its line is chosen)."""
    env, source = environment_of(row)
    error = f"<pre>{html.escape(row['error'])}</pre>" if row.get("error") else ""
    title = (
        f"{row['batch']} #{row.get('index', '-')}: {row['model']}, mode {row['mode']}, "
        f"{row.get('gpu_name') or row['device']}, status {row['status']}"
    )
    tables = (
        field_table("run", {k: stage(row) if k == "stage" else row.get(k) for k in RUN_KEYS})
        + field_table("config", row["config"])
        + field_table(f"environment ({source})", env)
        + field_table("metrics", {k: row.get(k) for k in METRIC_COLUMNS})
        + field_table("extra", row.get("extra") or {})
    )
    return (
        f'<div class="pb-detail" data-run="{run}" hidden><h3>Run {html.escape(title)}</h3>{error}'
        f'<div class="pb-detail-tables">{tables}</div></div>'
    )


def status_order(status: str) -> tuple[int, str]:
    """The lifecycle order of RUN_STATUSES; any other status after them."""
    return (RUN_STATUSES.index(status) if status in RUN_STATUSES else len(RUN_STATUSES), status)


def summary_table(runs: RunSet) -> str:
    """Runs by model, mode and device (a line each) and status (a column each), with their totals."""
    statuses = sorted({key[3] for key in runs.counts}, key=status_order)
    lines = []
    for group in sorted({key[:3] for key in runs.counts}):
        counts = [runs.counts[(*group, status)] for status in statuses]
        lines.append([*group, *(f"{n:,}" if n else "-" for n in counts), f"{sum(counts):,}"])
    note = shown_note(min(len(lines), TABLE_LINES), len(lines), "model / mode / device groups")
    return note + render_table(["model", "mode", "device", *statuses, "runs"], lines[:TABLE_LINES])


def runs_section(runs: RunSet) -> str:
    """The summary, filters, the run table of the latest runs and their detail views, with the script that
    ties them together."""
    rows = runs.recent
    if not rows:
        return EMPTY
    table = render_table(HEADER, [run_line(r) for r in rows], row_attrs=row_attributes(rows), table_id="pb-run-table")
    details = "".join(detail(r, i) for i, r in enumerate(rows))
    return (
        f"{summary_table(runs)}{shown_note(len(rows), runs.total, 'runs (the latest)')}"
        f"{filter_controls(rows)}<p>Click a run (or focus it and press Enter) for its details.</p>{table}"
        f'<div id="pb-details">{details}</div><script>{SCRIPT}</script>'
    )
