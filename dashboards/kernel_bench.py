"""Kernel benchmarks (`bench/kernels.py` JSON, read by :func:`dashboards.sources.read_kernels`): the
bandwidth each implementation achieves per op against N, ours (triton, torch_ref) and the public anchors
(fla, accelerated_scan, torch SDPA) side by side, under the device-copy bandwidth of the same run.

Achieved bandwidth = the op's minimal traffic (`bytes_fwd` / `bytes_fwd_bwd`) / median time, in GB/s
(10^9 bytes/s), computed the same way for the anchors (the JSON only has it for ours).
"""

from __future__ import annotations

import html
import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import PALETTE, Render, figure_divs, render_table

OURS = ("triton", "torch_ref")
PASSES = (("fwd", "bytes_fwd", "forward"), ("fwd_bwd", "bytes_fwd_bwd", "forward + backward"))
ENV_KEYS = (
    "gpu_name",
    "gpu",
    "driver",
    "cuda",
    "torch",
    "triton",
    "fla",
    "accelerated_scan",
    "git_commit",
    "git_dirty",
)
TABLE_HEADER = [
    "op",
    "N",
    "implementation",
    "fwd ms",
    "fwd+bwd ms",
    "fwd GB/s (% of copy)",
    "fwd+bwd GB/s (% of copy)",
    "note",
]
EMPTY = (
    "<p>No kernel benchmarks: run <code>python bench/kernels.py --out results/kernels/kernels.json</code> "
    "on a GPU and pass <code>--kernels results/kernels/kernels.json</code> to "
    "<code>phasebench dashboard build</code> or <code>serve</code>.</p>"
)


def timing(row: dict[str, Any], impl: str, kind: str) -> dict[str, Any]:
    """The `fwd` / `fwd_bwd` record of one implementation ({} when skipped, missing or absent)."""
    return row["impls"].get(impl, {}).get(kind) or {}


def achieved_gbps(row: dict[str, Any], impl: str, kind: str, bytes_key: str) -> float | None:
    median_ms, nbytes = timing(row, impl, kind).get("median_ms"), row.get(bytes_key)
    return nbytes / (median_ms * 1e-3) / 1e9 if median_ms and nbytes else None


def implementations(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(impl for r in rows for impl in r["impls"]))


def ops(file: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """op -> its rows by N."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in file["rows"]:
        out.setdefault(row["op"], []).append(row)
    return {op: sorted(rows, key=lambda r: r["shape"]["N"]) for op, rows in out.items()}


def shape_text(rows: list[dict[str, Any]]) -> str:
    return " ".join(f"{k}{v}" if k != "dtype" else str(v) for k, v in rows[0]["shape"].items() if k != "N")


def kernel_figures(files: list[dict[str, Any]]) -> list[go.Figure]:
    """One figure per file and op: achieved GB/s against N, forward and forward + backward panels."""
    return [kernel_figure(file, op, rows) for file in files for op, rows in ops(file).items()]


def log_range(values: list[float]) -> list[float]:
    """A log axis range holding every value with some room."""
    return [math.log10(min(values) / 1.6), math.log10(max(values) * 1.6)]


def kernel_figure(file: dict[str, Any], op: str, rows: list[dict[str, Any]]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"{title} (GB/s)" for _, _, title in PASSES])
    copy = file["copy_bandwidth_Bps"] / 1e9
    lengths = [r["shape"]["N"] for r in rows]
    speeds = [copy] + [
        g
        for r in rows
        for impl in r["impls"]
        for kind, key, _ in PASSES
        if (g := achieved_gbps(r, impl, kind, key)) is not None
    ]
    for i, impl in enumerate(implementations(rows)):
        style = {"color": PALETTE[i % len(PALETTE)], "dash": "solid" if impl in OURS else "dash"}
        name = html.escape(impl if impl in OURS else f"{impl} (anchor)")
        for col, (kind, bytes_key, _) in enumerate(PASSES, start=1):
            points = [(r["shape"]["N"], achieved_gbps(r, impl, kind, bytes_key)) for r in rows]
            points = [(n, gbps) for n, gbps in points if gbps is not None]
            fig.add_scatter(
                x=[n for n, _ in points],
                y=[g for _, g in points],
                name=name,
                legendgroup=name,
                mode="lines+markers",
                line=style,
                showlegend=col == 1,
                row=1,
                col=col,
            )
    span = [10**x for x in log_range(lengths)]
    for col in (1, 2):
        fig.add_scatter(
            x=span,
            y=[copy, copy],
            name=f"device copy bound ({copy:,.0f} GB/s)",
            legendgroup="copy",
            mode="lines",
            line={"color": "black", "dash": "dot"},
            showlegend=col == 1,
            row=1,
            col=col,
        )
    fig.update_xaxes(type="log", title_text="N (sequence length)", range=log_range(lengths), tickvals=lengths)
    fig.update_yaxes(type="log", title_text="achieved GB/s", range=log_range(speeds))
    env = file.get("environment") or {}
    gpu = env.get("gpu_name") or env.get("gpu") or file.get("device") or "?"
    fig.update_layout(
        title=html.escape(
            f"Kernel {op} ({shape_text(rows)}): achieved bandwidth (GB/s) against N, "
            f"fwd and fwd+bwd, {gpu}, {file['name']}"
        ),
        template="plotly_white",
        height=460,
    )
    return fig


def cell_ms(record: dict[str, Any]) -> str:
    return f"{record['median_ms']:.4g}" if record.get("median_ms") else "-"


def cell_gbps(row: dict[str, Any], impl: str, kind: str, bytes_key: str, copy_bps: float) -> str:
    gbps = achieved_gbps(row, impl, kind, bytes_key)
    return "-" if gbps is None else f"{gbps:,.0f} ({100 * gbps * 1e9 / copy_bps:.1f} %)"


def note(row: dict[str, Any], impl: str) -> str:
    """Why an implementation has no time: skipped, missing (an anchor not installed), or its error."""
    found = row["impls"][impl]
    errors = [
        f"{kind}: {timing(row, impl, kind)['error']}" for kind, _, _ in PASSES if timing(row, impl, kind).get("error")
    ]
    return "; ".join([str(found[k]) for k in ("skipped", "missing") if k in found] + errors)


def kernel_table(file: dict[str, Any]) -> list[list[str]]:
    """One line per (op, N, implementation); a case that failed as a whole is one line with its error."""
    lines = []
    for op, rows in ops(file).items():
        for r in rows:
            if not r["impls"]:
                lines.append([op, f"{r['shape']['N']:,}", "-", "-", "-", "-", "-", str(r.get("error", ""))])
            for impl in r["impls"]:
                lines.append(
                    [
                        op,
                        f"{r['shape']['N']:,}",
                        impl,
                        cell_ms(timing(r, impl, "fwd")),
                        cell_ms(timing(r, impl, "fwd_bwd")),
                        *(cell_gbps(r, impl, kind, key, file["copy_bandwidth_Bps"]) for kind, key, _ in PASSES),
                        note(r, impl),
                    ]
                )
    return lines


def environment_line(file: dict[str, Any]) -> str:
    env = file.get("environment") or {}
    known = ", ".join(f"{k} {'-' if env[k] is None else env[k]}" for k in ENV_KEYS if k in env)
    return html.escape(
        f"{file['name']}: {known}; device copy bandwidth {file['copy_bandwidth_Bps'] / 1e9:,.0f} GB/s"
        + (f"; not run: {len(file['not_run'])} cases" if file.get("not_run") else "")
    )


def kernel_section(files: list[dict[str, Any]], render: Render = figure_divs) -> str:
    """The kernels view: per file its environment, figures and table; an empty state without files."""
    if not files:
        return EMPTY
    return "".join(
        f"<p>{environment_line(f)}</p>{render(kernel_figures([f]))}{render_table(TABLE_HEADER, kernel_table(f))}"
        for f in files
    )
