"""The real `phasebench` command in a subprocess: `--where` comparisons, `results list --limit/--offset`,
`runs tag/untag/note/delete`, `run --tag`, and `--set` on the verbs that load a spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_helpers import phasebench

from orchestrator.spec import expand
from orchestrator.store.repository import Filters, Store
from orchestrator.store.schema import Run

TINY = {"vocab_size": 256, "d_model": 32, "n_layers": 1, "n_heads": 2, "device": "cpu"}


@pytest.fixture
def sweep(sqlite_url) -> tuple[str, list[str]]:
    """Batch `sweep`, stored through the store API (no Ray): transformer then phase7-seed at 16, 32 and 64
    tokens, run i finished ok at 100 (i + 1) tokens/s except the last, out of memory in backward; batch
    `again` holds the same configs, answered from those results. -> (URL, the sweep's run ids in order)"""
    store = Store(sqlite_url)
    grid = {"model": ["transformer", "phase7-seed"], "seq_len": [16, 32, 64]}
    batch = store.create_batch(expand({"name": "sweep", "defaults": TINY, "grid": grid}))
    runs = store.reset_unfinished(batch.id)
    for i, run in enumerate(runs[:-1]):
        store.record_result(run.id, {"status": "ok", "stage": "done", "tokens_per_s": 100.0 * (i + 1)})
    store.record_result(runs[-1].id, {"status": "oom", "stage": "backward", "error": "OOM"})
    store.create_batch(expand({"name": "again", "defaults": TINY, "grid": grid}))
    store.close()
    return sqlite_url, [r.id for r in runs]


def listed(url: str, *args: str, cwd: Path) -> list[dict]:
    """`results list --format json` with `args`, as records."""
    done = phasebench("results", "list", "--format", "json", "--db", url, *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_line_error(done, message: str) -> bool:
    return done.returncode == 2 and done.stderr.splitlines() == [f"error: {message}"]


def write_spec(tmp_path: Path, data: dict, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_where_compares_result_fields_config_fields_and_lists(sweep, tmp_path):
    url, ids = sweep
    rows = listed(url, "--batch", "sweep", "--where", "seq_len>=32", "--where", "status!=oom", cwd=tmp_path)
    assert [r["run_id"] for r in rows] == [ids[1], ids[2], ids[4]]
    rows = listed(url, "--where", "model in phase7-seed,gpt", "--where", "tokens_per_s>450", cwd=tmp_path)
    assert [(r["batch"], r["index"], r["status"]) for r in rows] == [("sweep", 4, "ok"), ("again", 4, "skipped")]
    export = phasebench("results", "export", "--where", "stage=backward", "--db", url, cwd=tmp_path)
    assert [(r["run_id"] == ids[5], r["status"]) for r in json.loads(export.stdout)] == [
        (True, "oom"),
        (False, "skipped"),
    ]
    for where, message in [
        ("seqlen>=32", "--where: unknown field 'seqlen'"),
        ("seq_len>=long", "--where: seq_len is a number (got 'long')"),
        ("seq_len", "--where: expected FIELD OP VALUE with OP one of = != < <= > >= in (got 'seq_len')"),
    ]:
        assert one_line_error(phasebench("results", "list", "--where", where, "--db", url, cwd=tmp_path), message)


def test_limit_and_offset_cut_the_sorted_list_and_say_so(sweep, tmp_path):
    url, ids = sweep
    base = ["results", "list", "--batch", "sweep", "--sort", "-tokens_per_s", "--columns", "run,tok/s", "--db", url]
    done = phasebench(*base, "--limit", "2", cwd=tmp_path)
    assert done.stdout.splitlines()[2:] == [f"{ids[4][:10]}  500", f"{ids[3][:10]}  400", "2 of 6 runs"]
    done = phasebench(*base, "--offset", "4", "--limit", "5", cwd=tmp_path)
    assert done.stdout.splitlines()[2:] == [f"{ids[0][:10]}  100", f"{ids[5][:10]}  -", "2 of 6 runs (offset 4)"]
    done = phasebench(*base, "--limit", "6", cwd=tmp_path)
    assert len(done.stdout.splitlines()) == 2 + 6  # nothing cut: no count
    done = phasebench("results", "list", "--format", "json", "--limit", "1", "--db", url, cwd=tmp_path)
    assert len(json.loads(done.stdout)) == 1 and done.stderr == "1 of 12 runs\n"  # stdout stays JSON
    assert one_line_error(
        phasebench(*base, "--limit", "0", cwd=tmp_path), "Invalid value for '--limit': 0 is not in the range x>=1."
    )


def test_tags_and_notes_are_listed_and_filtered(sweep, tmp_path):
    url, ids = sweep
    done = phasebench("runs", "tag", ids[0][:8], ids[1], "long-ctx", "--db", url, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "tag long-ctx: added to 2 of 2 runs\n", done.stderr
    phasebench("runs", "tag", ids[1], "v2", "--db", url, cwd=tmp_path)
    phasebench("runs", "note", ids[1], "rerun after the fix", "--db", url, cwd=tmp_path)
    table = phasebench("results", "list", "--batch", "sweep", "--db", url, cwd=tmp_path).stdout.splitlines()
    assert table[0].split()[-2:] == ["tags", "note"]
    assert table[3].startswith(ids[1][:10]) and table[3].endswith("long-ctx,v2  rerun after the fix")
    assert [r["run_id"] for r in listed(url, "--where", "tag=long-ctx", cwd=tmp_path)] == ids[:2]
    assert [r["run_id"] for r in listed(url, "--where", "tag in v2,v3", cwd=tmp_path)] == ids[1:2]
    done = phasebench("runs", "untag", ids[0], ids[1], "long-ctx", "--db", url, cwd=tmp_path)
    assert done.stdout == "tag long-ctx: taken off 2 of 2 runs\n"
    phasebench("runs", "note", ids[1], "", "--db", url, cwd=tmp_path)
    assert [(r["tags"], r["note"]) for r in listed(url, "--batch", "sweep", cwd=tmp_path)][:2] == [
        ([], None),
        (["v2"], None),
    ]
    header = phasebench("results", "list", "--batch", "sweep", "--db", url, cwd=tmp_path).stdout.splitlines()[0]
    assert header.split()[-1] == "tags"  # no run has a note: no note column
    unknown = phasebench("runs", "tag", ids[2], "zzzz", "new", "--db", url, cwd=tmp_path)
    assert one_line_error(unknown, "run: 'zzzz' matches no run")
    bad = phasebench("runs", "tag", ids[2], "two words", "--db", url, cwd=tmp_path)
    assert one_line_error(bad, "tag: 'two words' is not 1 to 100 letters, digits or _ . : + / -")
    assert listed(url, "--where", "tag in new,two words", cwd=tmp_path) == []


def test_delete_asks_first_and_takes_the_runs_that_reuse_it(sweep, tmp_path):
    url, ids = sweep
    store = Store(url, create=False)
    reusing = [r["run_id"] for r in store.rows(Filters(batch=("again",)))]
    with store.session() as s, s.begin():  # as if a study's trial 7 had been answered from ids[0]
        s.get(Run, reusing[0]).study_name, s.get(Run, reusing[0]).trial_number = "search", 7
    store.close()
    before = listed(url, cwd=tmp_path)
    declined = phasebench("runs", "delete", ids[0], "--db", url, cwd=tmp_path, stdin="n\n")
    assert declined.returncode == 1 and declined.stderr.endswith("nothing deleted\n")
    assert f"delete 1 run ({ids[0][:10]}) and 1 run reusing their results, with their results, tags" in declined.stderr
    assert "study search trials #7 link to these runs: the trials stay in the study" in declined.stderr
    unknown = phasebench("runs", "delete", ids[1], "zzzz", "--yes", "--db", url, cwd=tmp_path)
    assert one_line_error(unknown, "run: 'zzzz' matches no run")
    assert listed(url, cwd=tmp_path) == before
    done = phasebench("runs", "delete", ids[0], ids[5][:12], "--yes", "--db", url, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("deleted 2 runs (") and "and 2 runs reusing" in done.stdout
    gone = {ids[0], ids[5], reusing[0], reusing[5]}
    assert [r for r in before if r["run_id"] not in gone] == listed(url, cwd=tmp_path)
    confirmed = phasebench("runs", "delete", ids[1], "--db", url, cwd=tmp_path, stdin="y\n")
    assert confirmed.returncode == 0 and len(listed(url, cwd=tmp_path)) == 6


def test_run_tags_its_batch_and_set_overrides_the_spec_defaults(tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "name": "tagged",
            "defaults": TINY | {"seq_len": 16, "steps": 1, "warmup_steps": 0, "isolate": False},
            "grid": {"model": ["transformer", "phase7-seed"]},
        },
    )
    db = f"sqlite:///{tmp_path / 'pb.db'}"
    args = ["--set", "seq_len=24", "--set", "batch_size=2", "--tag", "smoke", "--tag", "v2", "--db", db]
    done = phasebench("run", spec, *args, "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    exported = json.loads(phasebench("results", "export", "--where", "tag=smoke", "--db", db, cwd=tmp_path).stdout)
    assert [(r["model"], r["tags"], r["config"]["seq_len"], r["config"]["batch_size"]) for r in exported] == [
        ("transformer", ["smoke", "v2"], 24, 2),
        ("phase7-seed", ["smoke", "v2"], 24, 2),
    ]


def test_bad_set_and_tag_are_one_line_errors_and_write_nothing(tmp_path):
    spec = write_spec(tmp_path, {"name": "x", "defaults": TINY | {"seq_len": 16}, "grid": {"model": ["transformer"]}})
    db = f"sqlite:///{tmp_path / 'pb.db'}"
    for args, message in [
        (["--set", "dmodel=3"], "dmodel: unknown field for TransformerConfig [config model=transformer] (got 3)"),
        (["--set", "seq_len"], "--set: expected key=value (got 'seq_len')"),
        (["--set", "model=phase7"], "--set model: is varied by the spec's grid, cases or space; set it there"),
        (["--tag", "a b"], "tag: 'a b' is not 1 to 100 letters, digits or _ . : + / -"),
    ]:
        done = phasebench("run", spec, *args, "--db", db, "--no-progress", cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.splitlines()[0].startswith(f"error: {message}"), done.stderr
        assert len(done.stderr.splitlines()) == 1
    resumed = phasebench("run", "--resume", "1", "--tag", "a", "--db", db, cwd=tmp_path)
    assert one_line_error(resumed, "--set, --tag: need SPEC (a resumed batch keeps its spec)")
    assert not (tmp_path / "pb.db").exists()
    dry = phasebench("run", spec, "--set", "seq_len=48", "--dry-run", "--json", cwd=tmp_path)
    assert [r["seq_len"] for r in json.loads(dry.stdout)] == [48]


def test_study_create_sets_the_defaults_of_the_study_spec(tmp_path):
    from orchestrator import study

    data = {
        "name": "search",
        "defaults": {"model": "transformer", "vocab_size": 256, "n_heads": 2, "device": "cpu", "seq_len": 16},
        "space": {"n_layers": {"choices": [1, 2]}},
        "objectives": ["maximize tokens_per_s"],
    }
    spec, db = write_spec(tmp_path, data), f"sqlite:///{tmp_path / 'pb.db'}"
    clash = phasebench("study", "create", spec, "--set", "n_layers=3", "--db", db, cwd=tmp_path)
    assert clash.returncode == 2 and "--set n_layers: is varied by the spec's grid, cases or space" in clash.stderr
    done = phasebench("study", "create", spec, "--set", "seq_len=32", "--set", "d_model=64", "--db", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _, stored = study.load("search", db)
    assert stored.defaults["seq_len"] == 32 and stored.defaults["d_model"] == 64
