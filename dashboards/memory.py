"""Stacked memory breakdown per config and model family: weights, optimizer state, gradients, logits,
activations; one figure per device (GPU) and mode.

The parts are disjoint and come from a result row's columns:

- weights: `weights_bytes`;
- optimizer state: `static_bytes - weights_bytes` (AdamW's moments; 0 outside `train`);
- gradients: `extra.gradient_bytes` (training modes); rows from before it was recorded: `params` x the
  parameters' element size (2 bytes in pure_fp16/bf16, else 4), marked "estimated";
- logits: `logits_bytes` (batch x seq x vocab x logits element size), capped at what is left;
- activations: the rest.

On a GPU `activation_bytes` is `peak - static` (the allocator's view: gradients, logits and activations
together), so gradients and logits are taken out of it and the stack adds up to the measured peak. On a
CPU it is the bytes autograd saves for backward (no gradients in it, 0 in inference) and there is no
allocator peak: the stack is static + gradients + saved tensors.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from .common import GIB, Render, by_place, figure_divs, is_training, knob_suffix, latest, variants

PARTS = ("weights", "optimizer state", "gradients", "logits", "activations")
COLORS = {
    "weights": "#1f77b4",
    "optimizer state": "#ff7f0e",
    "gradients": "#2ca02c",
    "logits": "#9467bd",
    "activations": "#d62728",
}
PARAM_BYTES = {"pure_fp16": 2, "pure_bf16": 2}  # fp32 and amp_* keep fp32 parameters
EMPTY = "<p>No memory measurements yet: run <code>phasebench run examples/quickstart.yaml</code>.</p>"
NOTES = (
    "Stacked parts (GiB): weights = <code>weights_bytes</code>; optimizer state = "
    "<code>static_bytes - weights_bytes</code>; gradients = <code>extra.gradient_bytes</code> "
    "(older rows: params x parameter element size, marked estimated); logits = <code>logits_bytes</code> "
    "(batch x seq x vocab x element size); activations = the rest. GPU: the parts add up to the measured "
    "peak (<code>activation_bytes</code> = peak - static holds gradients, logits and activations). "
    "CPU: no allocator peak; activations are the bytes autograd saves for backward (0 in inference)."
)


def breakdown_section(rows: list[dict[str, Any]], render: Render = figure_divs) -> str:
    figures = render(breakdown_figures(rows))
    return f"<p>{NOTES}</p>{figures}" if figures else EMPTY


def gradient_bytes(row: dict[str, Any]) -> tuple[int, bool]:
    """(Bytes of the parameter gradients, whether estimated from params x element size)."""
    if row["mode"] == "inference":
        return 0, False
    recorded = (row.get("extra") or {}).get("gradient_bytes")
    if recorded is not None:
        return recorded, False
    return (row.get("params") or 0) * PARAM_BYTES.get(row["config"].get("precision"), 4), True


def measured_by_allocator(row: dict[str, Any]) -> bool:
    default = "allocator" if row["device"] == "cuda" else "saved_tensors"
    return (row.get("extra") or {}).get("activation_source", default) == "allocator"


def memory_parts(row: dict[str, Any]) -> dict[str, int]:
    """The disjoint parts (bytes) of a measured row, in PARTS order (see the module docstring)."""
    weights = row["weights_bytes"]
    optimizer = max((row.get("static_bytes") or weights) - weights, 0)
    gradients, _ = gradient_bytes(row)
    rest = row["activation_bytes"]
    if measured_by_allocator(row):
        gradients = min(gradients, rest)
        rest -= gradients
    logits = min(row.get("logits_bytes") or 0, rest)
    return {
        "weights": weights,
        "optimizer state": optimizer,
        "gradients": gradients,
        "logits": logits,
        "activations": rest - logits,
    }


def breakdown_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Benchmark rows with a memory measurement (the latest of each config)."""
    return latest(
        [
            r
            for r in rows
            if not is_training(r) and r.get("weights_bytes") is not None and r.get("activation_bytes") is not None
        ]
    )


def group_label(row: dict[str, Any], shown: list[str]) -> str:
    """The bar group: width, length, batch and the variant knobs (families of one size differ in depth)."""
    cfg = row["config"]
    return f"d{cfg.get('d_model')} N{cfg['seq_len']} B{cfg.get('batch_size')}" + knob_suffix(cfg, shown, " ")


def bar_label(row: dict[str, Any]) -> str:
    return f"{row['model']} L{row['config'].get('n_layers')}"


def breakdown_figures(rows: list[dict[str, Any]]) -> list[go.Figure]:
    """One stacked-bar figure per (device, GPU, mode): x = (config group, model and depth), a trace per part."""
    return [breakdown_figure(subset, *where) for where, subset in by_place(breakdown_rows(rows))]


def breakdown_figure(subset: list[dict[str, Any]], device: str, gpu: str, mode: str) -> go.Figure:
    shown = variants(subset)
    subset = sorted(
        subset,
        key=lambda r: (
            r["config"].get("d_model") or 0,
            r["config"]["seq_len"],
            group_label(r, shown),
            r["config"].get("n_layers") or 0,
            r["model"],
        ),
    )
    x = [[html.escape(group_label(r, shown)) for r in subset], [html.escape(bar_label(r)) for r in subset]]
    parts = [memory_parts(r) for r in subset]
    fig = go.Figure()
    for part in PARTS:
        notes = ["estimated" if part == "gradients" and gradient_bytes(r)[1] else "" for r in subset]
        fig.add_bar(
            name=part,
            x=x,
            y=[p[part] / GIB for p in parts],
            marker_color=COLORS[part],
            text=notes,
            hovertemplate=f"{part}: %{{y:.3f}} GiB %{{text}}<extra>%{{x}}</extra>",
            textposition="none",
        )
    total = "the measured peak" if measured_by_allocator(subset[0]) else "static + gradients + saved tensors"
    fig.update_layout(
        title=f"Memory breakdown (GiB, stacked to {total}): mode {html.escape(mode)}, {html.escape(gpu or device)}",
        barmode="stack",
        yaxis_title="GiB",
        xaxis_title="config (width, length, batch) / model and depth",
        template="plotly_white",
        height=520,
    )
    return fig
