"""Scaling with sequence length: peak memory and tokens/s against seq_len per model family (log axes),
OOM and over-budget runs marked, and the length from which each family beats the transformer.

A series is one model at one set of other knobs (bookkeeping fields such as steps or seed aside) on one
device (GPU) and mode, over seq_len: at a fixed batch size, or with the batch size changing with the
length (constant tokens per step, as in examples/long-context.yaml). Only series measured at two or more
lengths are drawn; where one config was measured twice, the later batch's run counts. A family is
compared with the transformer series of the same device, mode and shared knobs, depth aside (families are
matched in size by their number of layers), nearest in parameter count, at equal (seq_len, batch_size).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import (
    GIB,
    MEASURED,
    PALETTE,
    Knobs,
    Render,
    batch,
    figure_divs,
    is_training,
    knob_suffix,
    knobs,
    latest,
    length,
    place,
    render_table,
    stage,
    variants,
)

BASELINE = "transformer"
SIZE_KNOBS = frozenset({"n_layers"})  # what may differ between a family and its transformer
EMPTY = (
    "<p>No sequence-length sweep yet: run <code>phasebench run examples/long-context.yaml</code> on a GPU, "
    "or any batch whose <code>seq_len</code> takes two or more values.</p>"
)
NOTES = (
    "Peak memory (GiB, the allocator's peak; none on CPU) and throughput (tokens/s) against the sequence "
    "length, log axes, one line per model at the same other knobs. A cross marks a run that ran out of memory "
    "(drawn at its peak at failure where recorded, else at the top of the memory panel, and at the bottom of "
    "the throughput panel); an open diamond a run that peaked above its config's <code>vram_budget_gb</code>."
)
CROSSOVER_HEADER = [
    "device",
    "mode",
    "family",
    "transformer",
    "tokens/s above the transformer from N =",
    "peak memory below the transformer from N =",
    "lengths compared",
]

Key = tuple[tuple[str, str, str], str, Knobs, int | None]  # place, model, knobs, batch size (None: any)


def scaling_section(rows: list[dict[str, Any]], render: Render = figure_divs) -> str:
    """The figures and the crossover table, or the empty state without a sweep."""
    figures = render(scaling_figures(rows))
    if not figures:
        return EMPTY
    lines = crossovers(rows)
    table = (
        render_table(CROSSOVER_HEADER, lines)
        if lines
        else "<p>No transformer sweep at the same knobs to compare with.</p>"
    )
    return f"<p>{NOTES}</p>{figures}<h3>Crossover against the transformer</h3>{table}"


def series(rows: list[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    """Key -> its measured or OOM benchmark rows, by seq_len: one series per (place, model, knobs), split
    by batch size where it holds several batch sizes at one length."""
    grouped: dict[tuple, list[dict[str, Any]]] = {}
    for r in latest([r for r in rows if not is_training(r) and r["status"] in MEASURED + ("oom",)]):
        grouped.setdefault((place(r), r["model"], knobs(r)), []).append(r)
    out: dict[Key, list[dict[str, Any]]] = {}
    for key, members in grouped.items():
        if len({length(r) for r in members}) == len(members):
            out[key + (None,)] = members
        else:
            for size in {batch(r) for r in members}:
                out[key + (size,)] = [r for r in members if batch(r) == size]
    return {key: sorted(members, key=length) for key, members in out.items()}


def is_sweep(members: list[dict[str, Any]]) -> bool:
    return len({length(r) for r in members}) > 1


def peak(row: dict[str, Any]) -> int | None:
    return row.get("peak_bytes") if row["status"] in MEASURED else None


def throughput(row: dict[str, Any]) -> float | None:
    return row.get("tokens_per_s") if row["status"] in MEASURED else None


def over_budget(row: dict[str, Any]) -> bool:
    budget = row["config"].get("vram_budget_gb") or 0
    return budget > 0 and peak(row) is not None and peak(row) > budget * GIB


def batch_text(members: list[dict[str, Any]]) -> str:
    sizes = sorted({batch(r) for r in members})
    tokens = {batch(r) * length(r) for r in members}
    if len(sizes) == 1:
        return f"B{sizes[0]}"
    return f"{tokens.pop():,} tokens/step" if len(tokens) == 1 else "B" + "/".join(map(str, sizes))


def series_label(key: Key, members: list[dict[str, Any]], shown: list[str] = ()) -> str:
    cfg = members[0]["config"]
    extra = knob_suffix(cfg, shown)
    return f"{key[1]} (d{cfg.get('d_model')} L{cfg.get('n_layers')}, {batch_text(members)}{extra})"


def scaling_figures(rows: list[dict[str, Any]]) -> list[go.Figure]:
    """One figure per (device, GPU, mode) with a seq_len sweep: peak GiB and tokens/s against seq_len."""
    swept = {key: members for key, members in series(rows).items() if is_sweep(members)}
    return [
        scaling_figure({k: m for k, m in swept.items() if k[0] == where}, *where)
        for where in sorted({key[0] for key in swept})
    ]


def scaling_figure(swept: dict[Key, list[dict[str, Any]]], device: str, gpu: str, mode: str) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("peak memory (GiB)", "throughput (tokens/s)"))
    everything = [r for members in swept.values() for r in members]
    ceiling = max([r["peak_bytes"] / GIB for r in everything if r.get("peak_bytes")] or [1.0])
    floor = min([throughput(r) for r in everything if throughput(r)] or [1.0])
    shown = variants(everything)
    for i, (key, members) in enumerate(sorted(swept.items(), key=lambda item: repr(item[0]))):
        label = html.escape(series_label(key, members, shown))
        add_series(fig, label, members, PALETTE[i % len(PALETTE)], ceiling, floor)
    fig.update_xaxes(
        type="log", title_text="sequence length (tokens)", tickvals=sorted({length(r) for r in everything})
    )
    fig.update_yaxes(type="log", title_text="GiB", row=1, col=1)
    fig.update_yaxes(type="log", title_text="tokens/s", row=1, col=2)
    fig.update_layout(
        title=f"Scaling with sequence length (GiB, tokens/s): mode {html.escape(mode)}, {html.escape(gpu or device)}",
        template="plotly_white",
        height=480,
    )
    return fig


def add_series(
    fig: go.Figure, label: str, members: list[dict[str, Any]], color: str, ceiling: float, floor: float
) -> None:
    """The series' lines (memory left, tokens/s right) and its OOM and over-budget markers."""
    sized = [r for r in members if peak(r) is not None]
    timed = [r for r in members if throughput(r) is not None]
    line = {"color": color}
    fig.add_scatter(
        x=[length(r) for r in sized],
        y=[peak(r) / GIB for r in sized],
        name=label,
        legendgroup=label,
        mode="lines+markers",
        line=line,
        row=1,
        col=1,
    )
    fig.add_scatter(
        x=[length(r) for r in timed],
        y=[throughput(r) for r in timed],
        name=label,
        legendgroup=label,
        mode="lines+markers",
        line=line,
        showlegend=False,
        row=1,
        col=2,
    )
    over = [r for r in members if over_budget(r)]
    if over:
        add_markers(
            fig,
            f"{label}: over budget",
            over,
            color,
            "diamond-open",
            lambda r: peak(r) / GIB,
            throughput,
            lambda r: f"{r['config']['vram_budget_gb']:g} GiB budget",
        )
    oom = [r for r in members if r["status"] == "oom"]
    if oom:
        add_markers(
            fig,
            f"{label}: OOM",
            oom,
            color,
            "x",
            lambda r: r["peak_bytes"] / GIB if r.get("peak_bytes") else ceiling,
            lambda r: floor,
            lambda r: html.escape(f"OOM in {stage(r) or '?'}"),
        )


def add_markers(
    fig: go.Figure,
    name: str,
    picked: list[dict[str, Any]],
    color: str,
    symbol: str,
    memory_y: Callable,
    speed_y: Callable,
    hover: Callable,
) -> None:
    marker = {"color": color, "symbol": symbol, "size": 13, "line": {"width": 2, "color": color}}
    x = [length(r) for r in picked]
    text = [hover(r) for r in picked]
    for col, y, legend in ((1, memory_y, True), (2, speed_y, False)):
        fig.add_scatter(
            x=x,
            y=[y(r) for r in picked],
            name=name,
            legendgroup=name,
            mode="markers",
            marker=marker,
            text=text,
            hovertemplate="N=%{x}: %{text}<extra></extra>",
            showlegend=legend,
            row=1,
            col=col,
        )


def comparable(a: Key, b: Key) -> bool:
    """Same device, GPU, mode and batch split, and equal values for every knob both configs have, depth aside."""
    a_knobs, b_knobs = dict(a[2]), dict(b[2])
    shared = (a_knobs.keys() & b_knobs.keys()) - SIZE_KNOBS
    return a[0] == b[0] and a[3] == b[3] and all(a_knobs[k] == b_knobs[k] for k in shared)


def faster(family: dict[str, Any], base: dict[str, Any]) -> bool:
    mine = throughput(family)
    return mine is not None and (base["status"] == "oom" or (throughput(base) is not None and mine > throughput(base)))


def smaller(family: dict[str, Any], base: dict[str, Any]) -> bool:
    mine = peak(family)
    return mine is not None and (base["status"] == "oom" or (peak(base) is not None and mine < peak(base)))


def first_length(pairs: list[tuple[dict[str, Any], dict[str, Any]]], wins: Callable) -> str:
    """The smallest seq_len at which `wins(family_row, transformer_row)`, or "none"."""
    for family, base in pairs:
        if wins(family, base):
            return f"{length(family):,}" + (" (transformer OOM)" if base["status"] == "oom" else "")
    return "none"


def params(members: list[dict[str, Any]]) -> int:
    return members[0].get("params") or 0


def crossovers(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One table line per swept family series that has a comparable transformer series."""
    groups = {key: members for key, members in series(rows).items() if is_sweep(members)}
    baselines = [key for key in groups if key[1] == BASELINE]
    lines = []
    for key, members in sorted(groups.items(), key=lambda item: repr(item[0])):
        candidates = [b for b in baselines if key[1] != BASELINE and comparable(key, b)]
        if not candidates:
            continue
        base_key = min(candidates, key=lambda b: abs(params(groups[b]) - params(members)))
        base = {(length(r), batch(r)): r for r in groups[base_key]}
        pairs = [(r, base[(length(r), batch(r))]) for r in members if (length(r), batch(r)) in base]
        (device, gpu, mode) = key[0]
        shown = variants([r for k, m in groups.items() if k[0] == key[0] for r in m])
        lines.append(
            [
                gpu or device,
                mode,
                f"{series_label(key, members, shown)}, {params(members):,} params",
                f"{series_label(base_key, groups[base_key], shown)}, {params(groups[base_key]):,} params",
                first_length(pairs, faster),
                first_length(pairs, smaller),
                ", ".join(f"{length(r):,}" for r, _ in pairs),
            ]
        )
    return lines
