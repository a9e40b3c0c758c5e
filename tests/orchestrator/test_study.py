"""Optuna studies end to end through a real local Ray on CPU, with tiny models; results and Optuna's
tables in one database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import math
import shlex
import signal
import sys
import tempfile
import uuid
import wsgiref.util
from pathlib import Path

import optuna
import optuna_dashboard
import pytest
import sqlalchemy as sa
import yaml
from cli_helpers import run_cli, start_until_result
from db_helpers import count, query
from optuna.trial import TrialState

from models.config import ConfigError
from orchestrator import api
from orchestrator import study as studies
from orchestrator.store.engine import mask_url
from orchestrator.store.migrate import head_revision
from orchestrator.store.repository import Store
from orchestrator.store.schema import Run

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "model": "transformer",
    "vocab_size": 256,
    "n_heads": 2,
    "n_layers": 1,
    "device": "cpu",
    "seq_len": 16,
    "steps": 1,
    "warmup_steps": 0,
    "timeout_s": 120,
}
GIB = 2**30

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make(name: str, space: dict, objectives: list[str], defaults: dict | None = None, **extra) -> dict:
    return {
        "name": name,
        "defaults": {k: v for k, v in (TINY | (defaults or {})).items() if k not in space},
        "space": space,
        "objectives": objectives,
        **extra,
    }


def results_of(url: str) -> dict[str, dict]:
    rows = query(url, "SELECT run_id, status, params, tokens_per_s, peak_rss_bytes FROM pb_results")
    return {r[0]: {"status": r[1], "params": r[2], "tokens_per_s": r[3], "peak_rss_bytes": r[4]} for r in rows}


# ------------------------------------------------------------------------------------ validation
BAD = [
    ({"objective": ["maximize params"]}, "objective"),
    ({"space": {"d_modl": {"choices": [32]}}}, "space.d_modl"),
    ({"space": {"n_layers": {"low": 3, "high": 1}}}, "space.n_layers"),
    ({"space": {"n_layers": {"low": 1.5, "high": 3}}}, "space.n_layers"),
    ({"space": {"seq_len": {"low": 16, "high": 100000, "log": True}}}, "space.seq_len"),
    ({"space": {"seq_len": {"low": 0, "high": 64, "log": True}}}, "space.seq_len.low"),
    ({"space": {"d_model": {"choices": [32, 32]}}}, "space.d_model.choices"),
    ({"space": {"d_model": {"choices": [32], "low": 1}}}, "space.d_model.low"),
    ({"space": {"job": {"choices": ["train"]}}}, "space.job"),
    ({"space": {"model": {"choices": ["transformer", "gpt5"]}}}, "space.model"),
    ({"objectives": ["maximize flops"]}, "objectives[0]"),
    ({"objectives": ["largest params"]}, "objectives[0]"),
    ({"objectives": ["minimize val_loss"]}, "objectives[0]"),
    ({"objectives": []}, "objectives"),
    ({"constraints": {"vram_budget_gb": -1}}, "constraints.vram_budget_gb"),
    ({"constraints": {"ram_gb": 1}}, "constraints.ram_gb"),
    ({"sampler": "annealing"}, "sampler.type"),
    ({"sampler": {"type": "tpe", "population_size": 4}}, "sampler.population_size"),
    ({"sampler": {"type": "random", "seed": -1}}, "sampler.seed"),
    ({"sampler": "grid", "space": {"ffn_rank_ratio": {"low": 0.1, "high": 1.0}}}, "space.ffn_rank_ratio"),
    ({"pruner": "median"}, "pruner"),
    ({"pruner": {"type": "hyperband"}}, "pruner.type"),
    ({"defaults": TINY | {"n_heads": 3}}, "n_heads"),  # no point of the space resolves
    ({"defaults": TINY | {"d_model": 32}}, "space.d_model"),  # searched and fixed
]


@pytest.mark.parametrize("change,field", BAD, ids=[f for _, f in BAD])
def test_bad_study_spec_is_a_config_error_naming_the_field(change, field):
    data = make("bad", {"d_model": {"choices": [32, 64]}}, ["maximize params"])
    data.update(change)
    if "space" in change:
        data["defaults"] = {k: v for k, v in data["defaults"].items() if k not in change["space"]}
    with pytest.raises(ConfigError) as info:
        studies.parse_study_spec(data)
    assert info.value.field == field
    assert "\n" not in str(info.value)


def test_cli_bad_spec_exits_2_and_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(make("bad", {"n_layers": {"low": 1, "high": 70000}}, ["maximize params"])))
    db = tmp_path / "pb.db"
    code, _, err = run_cli("study", "create", str(spec), "--db", f"sqlite:///{db}")
    assert code == 2
    assert err.strip().splitlines() == ["error: space.n_layers: must be <= 1024 (got 70000)"]
    assert not db.exists()
    code, _, err = run_cli("study", "show", "nothing", "--db", f"sqlite:///{db}")
    assert code == 2 and "does not exist" in err and not db.exists()


def test_example_studies_validate_and_create(db_url, capsys):
    for example, name in (("study-8gb-16k.yaml", "phase8-8gb-16k"), ("study-pareto.yaml", "pareto-throughput-memory")):
        code, out, err = run_cli("study", "create", str(REPO / "examples" / example), "--db", db_url)
        assert code == 0, err
        assert f"created study {name}" in out
        loaded = optuna.load_study(study_name=name, storage=db_url)
        spec = studies.parse_study_spec(loaded.user_attrs[studies.SPEC_ATTR])
        assert spec.name == name
    big = studies.load_study_spec(REPO / "examples" / "study-8gb-16k.yaml")
    assert big.vram_budget_gb == 8 and [o.label for o in big.objectives] == ["maximize params"]
    point = {p.name: (p.choices[0] if p.kind == "categorical" else p.low) for p in big.space}
    resolved, _ = big.resolve(point)
    assert resolved["seq_len"] == 16384 and resolved["mode"] == "train" and resolved["vram_budget_gb"] == 8.0
    pareto = studies.load_study_spec(REPO / "examples" / "study-pareto.yaml")
    seq = next(p for p in pareto.space if p.name == "seq_len")
    assert seq.log and seq.high == 16384
    assert next(p for p in pareto.space if p.name == "model").choices == ("transformer", "phase7", "phase8")
    code, _, err = run_cli("study", "create", str(REPO / "examples" / "study-pareto.yaml"), "--db", db_url)
    assert code == 2 and "already exists" in err


def test_the_readme_guide_study_runs_on_a_cpu_through_the_cli(local_ray, sqlite_url, capsys):
    code, out, err = run_cli("study", "create", str(REPO / "examples" / "study-cpu.yaml"), "--db", sqlite_url)
    assert code == 0 and "created study cpu-pareto" in out, err
    code, out, err = run_cli("study", "run", "cpu-pareto", "--trials", "4", "--parallel", "2", "--db", sqlite_url)
    assert code == 0, err
    assert "this session: COMPLETE 4" in out
    code, out, err = run_cli("study", "show", "cpu-pareto", "--db", sqlite_url)
    assert code == 0 and "trials 4: COMPLETE 4; feasible 4" in out and "Pareto set" in out


# ------------------------------------------------------------------------------------- end to end
def test_single_objective_study_and_a_second_study_answered_from_the_database(local_ray, db_url, tmp_path, capsys):
    space = {"d_model": {"choices": [32, 64]}}
    roomy = tmp_path / "roomy.yaml"
    roomy.write_text(
        yaml.safe_dump(
            make(
                "roomy",
                space,
                ["maximize params"],
                constraints={"vram_budget_gb": 100},
                sampler={"type": "grid", "seed": 0},
            )
        )
    )
    assert run_cli("study", "create", str(roomy), "--db", db_url)[0] == 0
    code, out, err = run_cli(
        "study", "run", "roomy", "--trials", "5", "--parallel", "2", "--no-progress", "--db", db_url
    )
    assert code == 0, err
    assert "COMPLETE 2" in out  # the grid has two points: --trials 5 stops there
    results = results_of(db_url)
    assert len(results) == 2 and all(r["status"] == "ok" for r in results.values())
    trials = optuna.load_study(study_name="roomy", storage=db_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        run_id = t.user_attrs["run_id"]
        assert t.values == [results[run_id]["params"]]
        assert t.user_attrs["constraints"][0] == pytest.approx(results[run_id]["peak_rss_bytes"] / GIB - 100)
        assert t.constraints and all(v <= 0 for v in t.constraints.values())
    rows = query(
        db_url,
        "SELECT study_name, trial_number, r.batch_id, b.name FROM pb_runs r "
        "JOIN pb_batches b ON b.id = r.batch_id ORDER BY trial_number",
    )
    assert rows == [("roomy", 0, 1, "roomy"), ("roomy", 1, 1, "roomy")]
    code, out, _ = run_cli("study", "best", "roomy", "--json", "--db", db_url)
    found = json.loads(out)
    assert code == 0 and len(found["best"]) == 1
    assert found["best"][0]["param_d_model"] == 64
    assert found["best"][0]["params"] == max(r["params"] for r in results.values())

    # the same configs under a 0.1 GiB budget: nothing reruns, every trial is infeasible
    tight = make("tight", space, ["maximize params"], constraints={"vram_budget_gb": 0.1}, sampler="grid")
    studies.create_study(tight, db=db_url)
    outcome = studies.run_study("tight", trials=2, parallel=2, db=db_url)
    assert outcome.counts == {"COMPLETE": 2} and outcome.reused == 2
    assert results_of(db_url).keys() == results.keys()  # no new measurement
    tight_trials = optuna.load_study(study_name="tight", storage=db_url).trials
    assert all(t.user_attrs["reused_run_id"] in results for t in tight_trials)
    assert all(t.user_attrs["constraints"][0] > 0 for t in tight_trials)
    summary = studies.study_summary("tight", db_url)
    assert summary["feasible"] == 0 and summary["best"] == []
    code, out, _ = run_cli("study", "show", "tight", "--db", db_url)
    assert code == 0 and "infeasible trials (2):" in out
    for r in summary["infeasible"]:  # each says why: its peak over the budget, by how much
        assert f"#{r['number']} d_model={r['param_d_model']}: peak {r['constraint']:.2f} GiB over" in out
    assert query(db_url, "SELECT count(*) FROM pb_runs WHERE study_name = 'tight' AND status = 'skipped'") == [(2,)]
    code, out, _ = run_cli("study", "export", "tight", "--format", "csv", "--db", db_url)
    assert code == 0 and out.splitlines()[0].startswith("number,state,model,params,param_d_model,constraint,feasible")


def test_multi_objective_study_shares_one_database_with_phasebench(local_ray, db_url, capsys):
    data = make(
        "pareto",
        {"model": {"choices": ["transformer", "phase8-seed"]}, "seq_len": {"low": 16, "high": 64, "log": True}},
        ["maximize tokens_per_s", "minimize peak_memory"],
        sampler={"type": "nsga2", "seed": 0, "population_size": 2},
    )
    studies.create_study(data, db=db_url)
    optuna_version = query(db_url, "SELECT version_num FROM alembic_version")
    reports = []
    outcome = studies.run_study("pareto", trials=3, parallel=2, db=db_url, on_trial=reports.append)
    assert outcome.counts == {"COMPLETE": 3} and outcome.total == 3 and not outcome.interrupted
    assert sorted(r.number for r in reports) == [0, 1, 2]

    loaded = optuna.load_study(study_name="pareto", storage=db_url)  # Optuna's own API, same URL
    assert [d.name for d in loaded.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert len(loaded.trials) == 3
    results = results_of(db_url)
    for t in loaded.trials:
        run_id = t.user_attrs.get("reused_run_id") or t.user_attrs["run_id"]
        tokens, peak = t.values
        assert tokens == pytest.approx(results[run_id]["tokens_per_s"]) and tokens > 0
        assert peak == pytest.approx(results[run_id]["peak_rss_bytes"] / GIB)
        assert t.params["model"] in ("transformer", "phase8-seed") and 16 <= t.params["seq_len"] <= 64
    summary = studies.study_summary("pareto", db_url)
    front = summary["pareto"]
    assert 1 <= len(front) <= 3
    values = [(r["tokens_per_s"], r["peak_memory"]) for r in summary["best"]]
    for a in values:  # nobody in the set is dominated by anyone in the study
        assert not any(
            b[0] >= a[0] and b[1] <= a[1] and b != a for b in [(t.values[0], t.values[1]) for t in loaded.trials]
        )
    assert {t.number for t in loaded.best_trials} == {r["number"] for r in front}

    # both schemas in one database: phasebench's revision and Optuna's version table, side by side
    tables = set(sa.inspect(sa.create_engine(db_url)).get_table_names())
    assert {"pb_runs", "pb_results", "pb_alembic_version", "studies", "trials", "alembic_version"} <= tables
    code, out, _ = run_cli("db", "current", "--db", db_url)
    assert code == 0 and f"current: {head_revision()}" in out
    assert run_cli("db", "upgrade", "--db", db_url)[0] == 0
    assert query(db_url, "SELECT version_num FROM alembic_version") == optuna_version
    assert query(db_url, "SELECT version_num FROM pb_alembic_version") == [(head_revision(),)]
    assert len(optuna.load_study(study_name="pareto", storage=db_url).trials) == 3
    code, out, _ = run_cli("study", "show", "pareto", "--db", db_url)
    assert code == 0 and "Pareto set" in out and "trials 3: COMPLETE 3" in out

    report = Path(tempfile.mkdtemp()) / "report.html"  # the study's figures in the dashboard
    code, _, err = run_cli("dashboard", "build", "--db", db_url, "--out", str(report))
    text = report.read_text()
    assert code == 0, err
    assert "<h3>pareto</h3>" in text and "Optimisation history (cpu, mode inference)" in text
    assert text.count('class="pb-figure"') >= 3

    # the same database opens in optuna-dashboard unchanged (its WSGI app, what `optuna-dashboard URL` serves)
    app = optuna_dashboard.wsgi(db_url)
    listed = wsgi_json(app, "/api/studies")["study_summaries"]
    assert [(s["study_name"], s["directions"]) for s in listed] == [("pareto", ["maximize", "minimize"])]
    detail = wsgi_json(app, f"/api/studies/{listed[0]['study_id']}")
    assert len(detail["trials"]) == 3 and {t["state"] for t in detail["trials"]} == {"Complete"}
    assert {t["number"] for t in detail["best_trials"]} == {r["number"] for r in front}


def wsgi_json(app, path: str) -> dict:
    """GET `path` from a WSGI app; its JSON body (asserting 200)."""
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    wsgiref.util.setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status[0].startswith("200"), (path, status, body[:500])
    return json.loads(body)


def test_dead_workers_and_invalid_configs_do_not_stop_the_study(local_ray, db_url):
    data = make(
        "faults",
        {"fault": {"choices": ["none", "exit"]}, "n_heads": {"choices": [2, 3]}},
        ["maximize params"],
        defaults={"d_model": 32},
        sampler="grid",
    )
    studies.create_study(data, db=db_url)
    outcome = studies.run_study("faults", trials=4, parallel=2, db=db_url, max_retries=0)
    assert outcome.counts == {"COMPLETE": 1, "FAIL": 1, "PRUNED": 2}
    trials = {
        (t.params["fault"], t.params["n_heads"]): t
        for t in optuna.load_study(study_name="faults", storage=db_url).trials
    }
    assert trials[("none", 2)].state == TrialState.COMPLETE
    dead = trials[("exit", 2)]
    assert dead.state == TrialState.FAIL
    assert "WorkerCrashedError" in dead.user_attrs["error"] or "died" in dead.user_attrs["error"]
    for fault in ("none", "exit"):
        invalid = trials[(fault, 3)]
        assert invalid.state == TrialState.PRUNED
        assert invalid.user_attrs["invalid_config"] == "n_heads: must divide d_model=32 (got 3)"
        assert "run_id" not in invalid.user_attrs  # nothing ran
    statuses = dict(query(db_url, "SELECT trial_number, status FROM pb_runs"))
    assert statuses == {trials[("none", 2)].number: "ok", dead.number: "failed"}


def stop_driver_after_a_result(name: str, trials: int, db: str, tmp_path, spawn, stop: int) -> str:
    """Run `phasebench study run NAME` in a subprocess, send it `stop` once a result is stored, check that
    it exits 130 and return its stderr."""
    args = ["study", "run", name, "--trials", str(trials), "--parallel", "1", "--no-progress", "--db", db]
    proc = start_until_result(spawn, args, tmp_path, lambda: count(db, "SELECT count(*) FROM pb_results"))
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    return err


def test_a_trial_too_large_for_every_device_is_infeasible_not_run(local_ray, sqlite_url):
    """A sampled config whose weights alone exceed the largest node's memory never reaches a worker: its
    trial is COMPLETE and infeasible, as an OOM's is, and the study goes on."""
    space = {"d_model": {"choices": [32, 65536]}}
    data = make("huge", space, ["maximize params"], defaults={"n_layers": 1024, "n_heads": 2}, sampler="grid")
    studies.create_study(data, db=sqlite_url)
    outcome = studies.run_study("huge", trials=2, parallel=1, db=sqlite_url)
    assert outcome.counts == {"COMPLETE": 2}
    records = {r["param_d_model"]: r for r in studies.export("huge", db=sqlite_url)}
    assert records[32]["feasible"] and records[65536]["feasible"] is False
    assert records[65536]["infeasible_because"] == "out of memory"
    (row,) = [r for r in api.results(db=sqlite_url) if r["config"]["d_model"] == 65536]
    assert row["status"] == "oom" and row["error"].startswith("not run: model: needs at least")
    assert row["started_at"] is None  # never dispatched


def test_sigterm_stops_the_study_driver_like_ctrl_c(sqlite_url, tmp_path, spawn):
    """`timeout` or a scheduler sends SIGTERM: no trial is left RUNNING, and the study can continue."""
    studies.create_study(
        make("term", {"d_model": {"choices": [32, 48, 64]}}, ["maximize params"], sampler={"type": "grid", "seed": 0}),
        db=sqlite_url,
    )
    stop_driver_after_a_result("term", 3, sqlite_url, tmp_path, spawn, signal.SIGTERM)
    states = {t.state for t in optuna.load_study(study_name="term", storage=sqlite_url).trials}
    assert TrialState.COMPLETE in states and TrialState.RUNNING not in states
    assert query(sqlite_url, "SELECT count(*) FROM pb_runs WHERE status IN ('pending', 'running')") == [(0,)]


def test_ctrl_c_and_a_killed_driver_then_the_study_continues(local_ray, db_url, tmp_path, spawn):
    data = make(
        "resume",
        # a grid of 10 points: the Ctrl-C driver may end with 3 or 4 trials (two ran at once), the orphan and
        # the second driver's 2 take 3 more; a 6-point grid ran out before the second driver's total
        {"d_model": {"choices": [32, 48, 64, 80, 96]}, "n_layers": {"low": 1, "high": 2}},
        ["maximize params"],
        sampler={"type": "grid", "seed": 3},
    )
    studies.create_study(data, db=db_url)
    err = stop_driver_after_a_result("resume", 6, db_url, tmp_path, spawn, signal.SIGINT)
    again = f"phasebench study run resume --trials 6 --db {shlex.quote(mask_url(db_url))}"
    assert f"continue with `{again}`" in err  # with the --db it was given, so that copying it continues this study
    after_ctrl_c = [(t.number, t.state) for t in optuna.load_study(study_name="resume", storage=db_url).trials]
    assert TrialState.COMPLETE in {s for _, s in after_ctrl_c} and TrialState.RUNNING not in {
        s for _, s in after_ctrl_c
    }
    assert query(db_url, "SELECT count(*) FROM pb_runs WHERE status IN ('pending', 'running')") == [(0,)]
    assert query(db_url, "SELECT status FROM pb_batches WHERE name = 'resume'") == [("interrupted",)]

    # a driver killed mid-trial leaves a RUNNING trial and its unfinished run behind
    orphan = optuna.load_study(study_name="resume", storage=db_url).ask()
    store = Store(db_url)
    try:
        with store.session() as s, s.begin():
            s.add(
                Run(
                    id=uuid.uuid4().hex,
                    batch_id=1,
                    index=orphan.number,
                    config_hash="0" * 16,
                    config={},
                    model="transformer",
                    mode="inference",
                    device="cpu",
                    params=1,
                    status="running",
                    study_name="resume",
                    trial_number=orphan.number,
                )
            )
    finally:
        store.close()

    total = len(after_ctrl_c) + 3
    second = studies.run_study("resume", trials=total, parallel=2, db=db_url)
    assert second.stale_failed == 1 and not second.interrupted and second.total == total
    assert second.counts == {"COMPLETE": 2}
    trials = optuna.load_study(study_name="resume", storage=db_url).trials
    assert [(t.number, t.state) for t in trials[: len(after_ctrl_c)]] == after_ctrl_c  # kept
    assert trials[orphan.number].state == TrialState.FAIL
    assert "driver stopped" in trials[orphan.number].user_attrs["error"]
    assert query(db_url, "SELECT status FROM pb_runs WHERE trial_number = :n", n=orphan.number) == [("failed",)]
    assert query(db_url, "SELECT status FROM pb_batches WHERE name = 'resume'") == [("done",)]
    third = studies.run_study("resume", trials=total, parallel=2, db=db_url)
    assert third.counts == {} and third.total == total  # every trial counts toward --trials


def test_gp_sampler_drives_a_study_and_without_scipy_is_a_config_error(local_ray, db_url, monkeypatch):
    data = make(
        "gp",
        {"ffn_rank_ratio": {"low": 0.25, "high": 1.0}},
        ["maximize params"],
        sampler={"type": "gp", "seed": 0, "n_startup_trials": 2},
    )
    spec = studies.create_study(data, db=db_url)
    assert type(spec.make_sampler()).__name__ == "GPSampler"
    outcome = studies.run_study("gp", trials=4, parallel=1, db=db_url)
    assert outcome.counts == {"COMPLETE": 4}
    trials = optuna.load_study(study_name="gp", storage=db_url).trials
    assert all(0.25 <= t.params["ffn_rank_ratio"] <= 1.0 for t in trials)
    assert len({t.params["ffn_rank_ratio"] for t in trials}) == 4  # the model-based trials propose new points

    monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy` now raises ImportError
    with pytest.raises(ConfigError, match="sampler.type: needs scipy"):
        studies.create_study(data | {"name": "gp-no-scipy"}, db=db_url)


def test_an_interrupt_between_storing_a_result_and_telling_optuna_keeps_the_result(local_ray, db_url, monkeypatch):
    studies.create_study(
        make("tellrace", {"d_model": {"choices": [32]}}, ["maximize params"], sampler="grid"), db=db_url
    )
    conclude = studies.StudyDriver._conclude
    calls = []

    def interrupted_once(self, *args, **kwargs):  # Ctrl-C lands after record_result, before the tell
        calls.append(args[1])
        if len(calls) == 1:
            raise KeyboardInterrupt
        return conclude(self, *args, **kwargs)

    monkeypatch.setattr(studies.StudyDriver, "_conclude", interrupted_once)
    outcome = studies.run_study("tellrace", trials=1, parallel=1, db=db_url)
    assert outcome.interrupted and len(calls) == 2 and calls[0] == calls[1]
    (trial,) = optuna.load_study(study_name="tellrace", storage=db_url).trials
    assert trial.state == TrialState.COMPLETE
    assert trial.values == [results_of(db_url)[calls[0]]["params"]]


def test_an_interrupt_inside_ask_leaves_no_running_trial(local_ray, db_url, monkeypatch):
    studies.create_study(
        make("askrace", {"d_model": {"choices": [32]}}, ["maximize params"], sampler="grid"), db=db_url
    )
    ask = optuna.Study.ask

    def ask_then_interrupt(self, *args, **kwargs):  # the trial exists in storage; the driver never sees it
        ask(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(optuna.Study, "ask", ask_then_interrupt)
    outcome = studies.run_study("askrace", trials=1, parallel=1, db=db_url)
    monkeypatch.undo()
    assert outcome.interrupted
    (trial,) = optuna.load_study(study_name="askrace", storage=db_url).trials
    assert trial.state == TrialState.FAIL and "Ctrl-C" in trial.user_attrs["error"]


def test_failing_unfinished_trials_leaves_one_that_ended_meanwhile(db_url, monkeypatch):
    """A trial listed as RUNNING may end before a stopping driver fails it (its result came in, or another
    driver of the study failed it first): it keeps its end, the driver does not crash, the rest still fail."""
    from orchestrator.study.driver import _fail_unfinished
    from orchestrator.study.storage import close_storage, load_study, open_storage

    studies.create_study(make("endrace", {"d_model": {"choices": [16, 32]}}, ["maximize params"]), db=db_url)
    storage = open_storage(db_url, create=False)
    try:
        study = load_study(storage, "endrace")
        first, second = study.ask(), study.ask()
        listed = study.get_trials(deepcopy=True, states=[TrialState.RUNNING])  # both, before the first ends
        study.tell(first, 1.0)
        monkeypatch.setattr(study, "get_trials", lambda **_: listed)
        failed = _fail_unfinished(Store(db_url, create=False), storage, study, "stopped", {first.number, second.number})
    finally:
        close_storage(storage)
    assert failed == 1
    trials = optuna.load_study(study_name="endrace", storage=db_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert "error" not in trials[0].user_attrs and trials[1].user_attrs["error"] == "stopped"


def test_median_pruner_stops_a_bad_training_run(local_ray, db_url, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(3000)))
    data = make(
        "prune",
        {"lr": {"choices": [0.01, 1e-7]}, "steps": {"choices": [400, 40000]}},
        ["minimize val_loss"],
        defaults={
            "job": "train",
            "d_model": 32,
            "eval_every": 10,
            "eval_tokens": 64,
            "lr_warmup_steps": 0,
            "batch_size": 2,
            "data": str(text),
            "timeout_s": 300,
        },
        sampler="random",
        pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    )
    studies.create_study(data, db=db_url)
    study = optuna.load_study(study_name="prune", storage=db_url)
    # a good run first, then one that barely learns, long enough that only the pruner can stop it in time (at
    # 400 steps it could end before the driver saw its first evaluation)
    study.enqueue_trial({"lr": 0.01, "steps": 400})
    study.enqueue_trial({"lr": 1e-7, "steps": 40000})
    outcome = studies.run_study("prune", trials=2, parallel=1, db=db_url)
    assert outcome.counts == {"COMPLETE": 1, "PRUNED": 1}
    good, bad = optuna.load_study(study_name="prune", storage=db_url).trials
    assert good.state == TrialState.COMPLETE and good.params["lr"] == 0.01
    assert good.values[0] < min(bad.intermediate_values.values())
    assert bad.state == TrialState.PRUNED and "pruned by the median pruner" in bad.user_attrs["error"]
    assert bad.intermediate_values and max(bad.intermediate_values) < 400
    steps = dict(query(db_url, "SELECT run_id, max(step) FROM pb_train_metrics WHERE kind = 'train' GROUP BY run_id"))
    assert steps[good.user_attrs["run_id"]] == 400 and steps[bad.user_attrs["run_id"]] < 40000
    assert (
        query(db_url, "SELECT status, error FROM pb_results WHERE run_id = :r", r=bad.user_attrs["run_id"])[0][0]
        == "failed"
    )
    assert math.isfinite(good.values[0])


def test_study_export_to_a_path_that_cannot_be_written_is_one_line(sqlite_url, tmp_path):
    studies.create_study(make("unwritten", {"d_model": {"choices": [32, 64]}}, ["maximize params"]), db=sqlite_url)
    target = tmp_path / "no" / "such" / "folder" / "trials.csv"
    code, out, err = run_cli("study", "export", "unwritten", "--out", str(target), "--db", sqlite_url)
    assert code == 2 and out == "" and err.startswith("error: --out: cannot write") and err.count("\n") == 1
    assert not target.parent.exists()


def test_study_list_shows_every_study_with_its_trials(local_ray, sqlite_url):
    for name in ("first", "second"):
        studies.create_study(
            make(name, {"d_model": {"choices": [32, 64]}}, ["maximize params"], sampler={"type": "grid", "seed": 0}),
            db=sqlite_url,
        )
    studies.run_study("second", trials=2, parallel=1, db=sqlite_url)
    code, out, err = run_cli("study", "list", "--db", sqlite_url)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["study", "trials", "states"], err
    assert lines[2].split()[:2] == ["first", "0"] and lines[3].split()[:4] == ["second", "2", "complete", "2"]
    code, out, _ = run_cli("study", "list", "--json", "--db", sqlite_url)
    listed = json.loads(out)
    assert [s["name"] for s in listed] == ["first", "second"] and listed[1]["states"] == {"COMPLETE": 2}
    assert listed[0]["objectives"] == ["maximize params"]
