"""Study figures from trial records and an in-memory Optuna study (no Ray)."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from dashboards.study import history_figure, importance_figure, objectives_of, pareto_figure, run_context

optuna.logging.set_verbosity(optuna.logging.WARNING)


def record(number, model, tokens, peak, feasible=True, state="COMPLETE", **params):
    return {
        "number": number,
        "state": state,
        "model": model,
        "tokens_per_s": tokens,
        "peak_memory": peak,
        "feasible": feasible if state == "COMPLETE" else None,
        **{f"param_{k}": v for k, v in params.items()},
    }


RECORDS = [
    record(0, "transformer", 100.0, 2.0, seq_len=512),
    record(1, "transformer", 80.0, 1.0, seq_len=1024),
    record(2, "transformer", 70.0, 3.0, seq_len=2048),  # dominated by 0 and 1
    record(3, "phase8", 50.0, 0.5, seq_len=512),
    record(4, "phase8", -math.inf, math.inf, feasible=False, seq_len=16384),  # OOM
    record(5, "phase8", 200.0, 9.0, feasible=False, seq_len=4096),  # over budget
    record(6, "phase8", None, None, state="FAIL"),
]
OBJECTIVES = ["maximize tokens_per_s", "minimize peak_memory"]


def traces(fig, name):
    return [t for t in fig.data if t.name == name]


def test_pareto_front_per_family_leaves_out_dominated_and_infeasible_trials():
    fig = pareto_figure(RECORDS, OBJECTIVES)
    (front,) = traces(fig, "transformer Pareto front")
    assert list(front.x) == [80.0, 100.0] and list(front.y) == [1.0, 2.0]
    (points,) = traces(fig, "transformer")
    assert sorted(points.x) == [70.0, 80.0, 100.0]
    (phase8,) = traces(fig, "phase8 Pareto front")
    assert list(phase8.x) == [50.0]
    (infeasible,) = traces(fig, "infeasible")
    assert list(infeasible.x) == [200.0]  # the OOM's infinite values are not drawn
    assert fig.layout.xaxis.title.text == "maximize tokens_per_s"
    with pytest.raises(ValueError):
        pareto_figure(RECORDS, OBJECTIVES[:1])


def test_history_shows_best_feasible_so_far_per_objective():
    fig = history_figure(RECORDS, OBJECTIVES)
    (best_tokens,) = traces(fig, "tokens_per_s: best so far")
    assert list(best_tokens.x) == [0, 1, 2, 3] and list(best_tokens.y) == [100.0, 100.0, 100.0, 100.0]
    (best_peak,) = traces(fig, "peak_memory: best so far")
    assert list(best_peak.y) == [2.0, 1.0, 1.0, 0.5]
    (crosses,) = traces(fig, "tokens_per_s: infeasible")
    assert list(crosses.x) == [5]
    assert [a.text for a in fig.layout.annotations] == OBJECTIVES
    assert [o.metric for o in objectives_of(OBJECTIVES)] == ["tokens_per_s", "peak_memory"]


def _study(values: list[tuple[int, str, float]]):
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("objectives", ["maximize params"])
    dists = {"n_layers": IntDistribution(1, 8), "model": CategoricalDistribution(["a", "b"])}
    for n_layers, model, value in values:
        study.add_trial(
            optuna.trial.create_trial(params={"n_layers": n_layers, "model": model}, distributions=dists, value=value)
        )
    return study


def test_importance_ranks_the_parameter_that_drives_the_objective():
    rows = [(n, m, 1000.0 * n + (1.0 if m == "a" else 0.0)) for n in range(1, 9) for m in ("a", "b")]
    rows.append((8, "a", -math.inf))  # an OOM trial: left out of the importance
    fig = importance_figure(_study(rows))
    (bars,) = fig.data
    assert bars.y[-1] == "n_layers"  # the most important is drawn on top
    assert dict(zip(bars.y, bars.x, strict=False))["n_layers"] > dict(zip(bars.y, bars.x, strict=False))["model"]
    assert fig.layout.title.text == "Parameter importance for maximize params"


def test_importance_needs_two_completed_trials():
    fig = importance_figure(_study([(2, "a", 5.0)]))
    assert not fig.data
    assert "needs at least 2 completed trials (1 so far)" in fig.layout.annotations[0].text


def test_study_titles_name_the_gpu_and_mode():
    rows = [
        {"gpu_name": "NVIDIA H200", "device": "cuda", "mode": "inference", "config": {"job": "benchmark"}},
        {"gpu_name": None, "device": "cpu", "mode": "train", "config": {"job": "train"}},
    ]
    assert run_context(rows) == "NVIDIA H200 / cpu, mode inference / train (job train)"
    assert run_context([]) == "no runs yet, mode -"
