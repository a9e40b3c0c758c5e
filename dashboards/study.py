"""Figures of an Optuna study: optimisation history, Pareto front per model family, parameter importance.

The history and Pareto figures take the study's trial records (:func:`orchestrator.study.export`: one
flat dict per trial with `state`, `feasible`, `model`, one key per objective metric and `param_<name>`)
and its objective labels (`"maximize params"`, ...); the importance figure takes the Optuna study itself.
Every function returns a plotly Figure (the report wires them in).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from orchestrator.study import Objective, pareto_front

from .common import PALETTE

INFEASIBLE = "rgba(150, 150, 150, 0.7)"


def objectives_of(labels: Sequence[str | Objective]) -> list[Objective]:
    """`["maximize params", ...]` -> Objective list (Objectives pass through)."""
    out = []
    for label in labels:
        if isinstance(label, Objective):
            out.append(label)
        else:
            direction, metric = str(label).split()
            out.append(Objective(direction, metric))
    return out


def _completed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["state"] == "COMPLETE"]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def _hover(r: dict[str, Any]) -> str:
    params = ", ".join(f"{k[len('param_') :]}={v}" for k, v in r.items() if k.startswith("param_"))
    return f"trial {r['number']} ({r.get('model')})<br>{params}"


def history_figure(
    records: list[dict[str, Any]], objectives: Sequence[str | Objective], title: str = "Optimisation history"
) -> go.Figure:
    """One panel per objective: every completed trial's value by trial number (feasible: dots,
    infeasible: grey crosses) and the best feasible value so far (line)."""
    objs = objectives_of(objectives)
    fig = make_subplots(rows=len(objs), cols=1, shared_xaxes=True, subplot_titles=[o.label for o in objs])
    done = sorted(_completed(records), key=lambda r: r["number"])
    for row, o in enumerate(objs, start=1):
        feasible = [r for r in done if r["feasible"] and _finite(r[o.metric])]
        infeasible = [r for r in done if not r["feasible"] and _finite(r[o.metric])]
        fig.add_trace(
            go.Scatter(
                x=[r["number"] for r in feasible],
                y=[r[o.metric] for r in feasible],
                mode="markers",
                name=f"{o.metric}: feasible",
                marker={"color": PALETTE[0]},
                text=[_hover(r) for r in feasible],
                hoverinfo="text+y",
            ),
            row=row,
            col=1,
        )
        if infeasible:
            fig.add_trace(
                go.Scatter(
                    x=[r["number"] for r in infeasible],
                    y=[r[o.metric] for r in infeasible],
                    mode="markers",
                    name=f"{o.metric}: infeasible",
                    marker={"color": INFEASIBLE, "symbol": "x"},
                    text=[_hover(r) for r in infeasible],
                    hoverinfo="text+y",
                ),
                row=row,
                col=1,
            )
        xs, ys, best = [], [], None
        for r in feasible:
            value = r[o.metric]
            if best is None or (value > best if o.direction == "maximize" else value < best):
                best = value
            xs.append(r["number"])
            ys.append(best)
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="lines", line={"shape": "hv", "color": PALETTE[1]}, name=f"{o.metric}: best so far"
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text=o.metric, row=row, col=1)
    fig.update_xaxes(title_text="trial", row=len(objs), col=1)
    fig.update_layout(title=title, height=300 * len(objs) + 100)
    return fig


def pareto_figure(
    records: list[dict[str, Any]],
    objectives: Sequence[str | Objective],
    x: int = 0,
    y: int = 1,
    title: str = "Pareto front per model family",
) -> go.Figure:
    """Objectives `x` and `y` of every completed trial, coloured by model family, with each family's
    Pareto front (feasible trials only) drawn as a line; infeasible trials are grey crosses."""
    objs = objectives_of(objectives)
    if len(objs) < 2:
        raise ValueError("a Pareto front needs at least two objectives")
    ox, oy = objs[x], objs[y]
    done = [r for r in _completed(records) if _finite(r[ox.metric]) and _finite(r[oy.metric])]
    fig = go.Figure()
    for i, family in enumerate(sorted({str(r["model"]) for r in done})):
        color = PALETTE[i % len(PALETTE)]
        members = [r for r in done if str(r["model"]) == family and r["feasible"]]
        fig.add_trace(
            go.Scatter(
                x=[r[ox.metric] for r in members],
                y=[r[oy.metric] for r in members],
                mode="markers",
                name=family,
                legendgroup=family,
                marker={"color": color},
                text=[_hover(r) for r in members],
                hoverinfo="text+x+y",
            )
        )
        front = sorted(pareto_front(members, [ox, oy]), key=lambda r: r[ox.metric])
        fig.add_trace(
            go.Scatter(
                x=[r[ox.metric] for r in front],
                y=[r[oy.metric] for r in front],
                mode="lines",
                line={"color": color, "shape": "hv"},
                legendgroup=family,
                name=f"{family} Pareto front",
            )
        )
    infeasible = [r for r in done if not r["feasible"]]
    if infeasible:
        fig.add_trace(
            go.Scatter(
                x=[r[ox.metric] for r in infeasible],
                y=[r[oy.metric] for r in infeasible],
                mode="markers",
                name="infeasible",
                marker={"color": INFEASIBLE, "symbol": "x"},
                text=[_hover(r) for r in infeasible],
                hoverinfo="text+x+y",
            )
        )
    fig.update_layout(title=title, xaxis_title=ox.label, yaxis_title=oy.label)
    return fig


def importance_figure(study, objective: int = 0, title: str | None = None) -> go.Figure:
    """Parameter importance (Optuna's default evaluator) for one objective; needs at least two completed
    trials, otherwise the figure says so."""
    import optuna

    label = study.user_attrs.get("objectives", [None] * (objective + 1))[objective] or f"objective {objective}"
    fig = go.Figure()
    fig.update_layout(title=title or f"Parameter importance for {label}")
    completed = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    finite = [t for t in completed if _finite(t.values[objective])]
    if len(finite) < 2:
        fig.add_annotation(
            text=f"needs at least 2 completed trials ({len(finite)} so far)",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
        )
        return fig
    finite_only = optuna.create_study(directions=study.directions)  # in memory: OOM trials carry +-inf
    finite_only.add_trials(finite)
    try:
        sign = -1.0 if study.directions[objective] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        with warnings.catch_warnings():  # it warns that it ranks for a low target: `sign` sees to that
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(
                finite_only, target=lambda t: sign * t.values[objective]
            )
    except (ValueError, RuntimeError) as exc:
        fig.add_annotation(
            text=f"importance unavailable: {exc}", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
        return fig
    names = list(importances)[::-1]  # the most important on top
    fig.add_trace(go.Bar(x=[importances[n] for n in names], y=names, orientation="h"))
    fig.update_layout(xaxis_title="importance (normalised)")
    return fig


def run_context(rows: list[dict[str, Any]]) -> str:
    """Where a study's runs ran and in which mode, for figure titles: e.g. 'NVIDIA H200, mode inference'."""
    places = sorted({r.get("gpu_name") or r["device"] for r in rows})
    modes = sorted({"train (job train)" if r["config"].get("job") == "train" else r["mode"] for r in rows})
    return f"{' / '.join(places) or 'no runs yet'}, mode {' / '.join(modes) or '-'}"


def study_figures(study, spec, where: str = "") -> list[go.Figure]:
    """The figures of one study for the report: history, the Pareto front (several objectives) and
    parameter importance. `study`, `spec`: as :func:`orchestrator.study.load` returns them; `where`
    (:func:`run_context`) goes into every title."""
    from orchestrator.study import trial_records

    suffix = f" ({where})" if where else ""
    records = trial_records(study, spec)
    figures = [history_figure(records, spec.objectives, title=f"Optimisation history{suffix}")]
    if len(spec.objectives) > 1:
        figures.append(pareto_figure(records, spec.objectives, title=f"Pareto front per model family{suffix}"))
    importance = importance_figure(study)
    importance.update_layout(title=importance.layout.title.text + suffix)
    return figures + [importance]
