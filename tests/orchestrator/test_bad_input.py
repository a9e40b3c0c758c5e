"""Bad input, generated: every malformed spec, argument or database path is one line on stderr, exit 2.

Each case checks the whole contract of a user error: exit code 2, exactly one line `error: ...` on stderr,
no traceback, and nothing written (no database file created; an existing database keeps its rows,
tables and schema revision). The CLI is driven in-process through `phasebench.cli.main` for speed;
a few cases go through the installed entry point. Nothing here may start Ray: `Runner.run_batch` and
`init_ray` are replaced by a tripwire, so a spec that wrongly passes validation fails the test loudly
instead of running.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from cli_helpers import REPO, run_cli
from cli_helpers import TINY as CLI_TINY
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import models
import orchestrator.runner
from orchestrator import spec as spec_module
from orchestrator import yamlfile
from orchestrator.spec import expand
from orchestrator.store.engine import VERSION_TABLE
from orchestrator.store.migrate import head_revision
from orchestrator.store.repository import Store

TINY = {"model": "transformer"} | CLI_TINY
FUTURE_REVISION = "ffff_from_the_future"
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
ERROR_LINE = re.compile(r"(?i)^error: .")


# ------------------------------------------------------------------------------------------ helpers
def phasebench(*args: str | bytes, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The installed console script (the real entry point), else the module."""
    exe = Path(sys.executable).with_name("phasebench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "phasebench"]
    env = {k: v for k, v in os.environ.items() if k not in ("PHASEBENCH_DB", "RAY_ADDRESS")}
    return subprocess.run(
        cmd + list(args), cwd=cwd, input=stdin, capture_output=True, timeout=120, env=env | {"PYTHONPATH": str(REPO)}
    )


def assert_user_error(code: int, err: str, *, contains: str | None = None) -> None:
    """The contract of bad input: exit 2 and exactly one line `error: ...` on stderr, no traceback."""
    assert "Traceback" not in err, err
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    lines = re.split(r"\r\n|\r|\n", err.strip("\n"))  # what a terminal breaks lines on
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert ERROR_LINE.match(lines[0]), f"not an `error: ...` line: {lines[0]!r}"
    if contains is not None:
        assert contains in lines[0], lines[0]


def sqlite_path(url: str) -> Path:
    return Path(sa.engine.make_url(url).database)


def db_state(url: str) -> dict[str, object]:
    """Tables, row counts and schema revision, read without writing (SQLite opened read-only)."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        assert path.is_file(), f"{path} vanished"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
            state: dict[str, object] = {"tables": tables}
            for table in tables:
                state[table] = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            if VERSION_TABLE in tables:
                state["revision"] = [r[0] for r in conn.execute(f"SELECT version_num FROM {VERSION_TABLE}")]
        finally:
            conn.close()
        return state
    engine = sa.create_engine(url)
    try:
        tables = sorted(sa.inspect(engine).get_table_names())
        state = {"tables": tables}
        with engine.connect() as conn:
            for table in tables:
                state[table] = conn.exec_driver_sql(f'SELECT COUNT(*) FROM "{table}"').scalar()
            if VERSION_TABLE in tables:
                state["revision"] = [r[0] for r in conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")]
    finally:
        engine.dispose()
    return state


def listing(folder: Path) -> set[str]:
    """Every path under `folder`; SQLite's -wal/-shm companions of an existing database are left out."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith(("-wal", "-shm"))}


def seed_batch(url: str) -> None:
    """A stored batch of two runs (not run): rows that bad input must leave alone."""
    store = Store(url)
    try:
        store.create_batch(expand({"name": "kept", "defaults": TINY, "grid": {"seq_len": [16, 32]}}))
    finally:
        store.close()


def stamp(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '{revision}'")
    engine.dispose()


def write_spec(path: Path, data) -> str:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Tripwire: bad input must never reach the runner."""

    def tripwire(*args, **kwargs):
        raise AssertionError("bad input reached the Ray runner: validation let it through")

    monkeypatch.setattr(orchestrator.runner.Runner, "run_batch", tripwire)
    monkeypatch.setattr(orchestrator.runner, "init_ray", tripwire)
    monkeypatch.delenv("PHASEBENCH_DB", raising=False)


@pytest.fixture
def seeded(tmp_path) -> str:
    """A SQLite database at the head revision holding one batch, in its own folder."""
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder / 'pb.db'}"
    seed_batch(url)
    return url


# ---------------------------------------------------------------------------- spec value strategies
BUILTIN_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict, "list": list}


def _field_specs() -> dict[str, tuple[type, dict]]:
    """name -> (type, validation metadata) of every field a spec may set for the transformer."""
    fields: dict[str, tuple[type, dict]] = {}
    for types, metas in (
        (spec_module.RUN_FIELD_TYPES, spec_module.RUN_FIELD_META),
        (getattr(spec_module, "TRAIN_FIELD_TYPES", {}), getattr(spec_module, "TRAIN_FIELD_META", {})),
    ):
        for name, kind in types.items():
            fields[name] = (BUILTIN_TYPES[kind] if isinstance(kind, str) else kind, metas[name])
    cls = models.get("transformer").config_cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        fields[f.name] = (hints[f.name], dict(f.metadata))
    return fields


FIELDS = _field_specs()
# free-form strings (a registry name is checked by the registry, paths by the train job) are left out
CHECKED = sorted(n for n, (kind, meta) in FIELDS.items() if kind is not str or "choices" in meta or n == "model")
NOT_A_NUMBER = st.one_of(
    st.text(max_size=12),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), min_size=1, max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), min_size=1, max_size=2),
)


def bad_value(name: str) -> st.SearchStrategy:
    """Values that are wrong for field `name`: wrong type, out of range, not one of its choices."""
    kind, meta = FIELDS[name]
    if name == "model":
        return st.one_of(st.text(max_size=20).filter(lambda s: s not in models.names()), st.integers(), st.none())
    if kind is bool:
        return st.one_of(st.integers(), st.text(max_size=8), st.none(), st.floats(allow_nan=True))
    if kind in (dict, list):
        return st.one_of(
            st.integers(),
            st.text(max_size=8),
            st.booleans(),
            st.floats(allow_nan=True),
            st.lists(st.integers(), min_size=1, max_size=2)
            if kind is dict
            else st.dictionaries(st.text(max_size=4), st.integers(), min_size=1, max_size=2),
        )
    if kind is str:
        return st.one_of(
            st.text(max_size=20).filter(lambda s: s not in meta["choices"]),
            st.integers(),
            st.floats(allow_nan=True),
            st.booleans(),
        )
    out_of_range = []
    if kind is int:
        wrong = st.one_of(NOT_A_NUMBER, st.floats(allow_nan=True, allow_infinity=True))
        if "min" in meta:
            out_of_range.append(st.integers(max_value=math.ceil(meta["min"]) - 1))
        if "gt" in meta:
            out_of_range.append(st.integers(max_value=math.floor(meta["gt"])))
        if "max" in meta:
            out_of_range.append(st.integers(min_value=math.floor(meta["max"]) + 1))
    else:
        wrong = st.one_of(NOT_A_NUMBER, st.sampled_from([math.nan, math.inf, -math.inf]))
        if "min" in meta:
            out_of_range.append(
                st.floats(max_value=meta["min"], exclude_max=True, allow_infinity=False, allow_nan=False).filter(
                    lambda v, m=meta["min"]: v < m
                )
            )
        if "gt" in meta:
            out_of_range.append(st.floats(max_value=meta["gt"], allow_infinity=False, allow_nan=False))
        if "max" in meta:
            out_of_range.append(
                st.floats(min_value=meta["max"], exclude_min=True, allow_infinity=False, allow_nan=False).filter(
                    lambda v, m=meta["max"]: v > m
                )
            )
        if name == "num_gpus":  # device is cpu in TINY: any positive count is wrong too
            out_of_range.append(st.floats(min_value=1e-6, max_value=1024.0))
    return st.one_of(wrong, *out_of_range)


@st.composite
def malformed_specs(draw) -> tuple[dict, str]:
    """A valid tiny spec with one field made wrong, in defaults, in a case or on a grid axis."""
    name = draw(st.sampled_from(CHECKED))
    value = draw(bad_value(name))
    where = draw(st.sampled_from(["defaults", "case", "grid"]))
    axis = "seed" if name != "seed" else "repeats"  # a grid axis never overrides the bad field
    data: dict = {"name": "bad", "defaults": dict(TINY), "grid": {axis: [1]}}
    data["defaults"].pop(name, None)
    if where == "defaults":
        data["defaults"][name] = value
    elif where == "case":
        data["cases"] = [{name: value}]
    else:
        data["grid"][name] = [value]
    return data, name


KNOWN_KEYS = set(FIELDS)


# ------------------------------------------------------------------------------------ spec properties
@PROPERTY
@given(case=malformed_specs())
def test_wrong_types_and_out_of_range_values_are_one_line_errors(case, tmp_path_factory, seeded):
    """Every field of a spec, set to a wrong type or an out-of-range value, anywhere in the spec."""
    data, field = case
    folder = tmp_path_factory.mktemp("spec")
    before, files = db_state(seeded), listing(folder)
    path = write_spec(folder / "spec.yaml", data)
    code, out, err = run_cli("run", path, "--db", seeded, "--no-progress")
    assert_user_error(code, err, contains=field)
    assert out == ""
    assert db_state(seeded) == before
    assert listing(folder) == files | {"spec.yaml"}


@PROPERTY
@given(
    key=st.text(max_size=30).filter(lambda k: k not in KNOWN_KEYS),
    value=st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.none()),
    where=st.sampled_from(["top", "defaults", "case", "grid"]),
)
@example(key="0E0", value=None, where="defaults")  # PyYAML writes it plain; the spec reader takes it as 0.0
@example(key="1e-3", value=1, where="top")
def test_unknown_keys_are_one_line_errors(key, value, where, tmp_path_factory, seeded):
    assume(not (where == "top" and key in spec_module.SPEC_KEYS))
    data: dict = {"name": "bad", "defaults": dict(TINY), "grid": {"n_layers": [1]}}
    if where == "top":
        data[key] = value
    elif where == "defaults":
        data["defaults"][key] = value
    elif where == "case":
        data["cases"] = [{key: value}]
    else:
        data["grid"][key] = [value]
    before = db_state(seeded)
    path = write_spec(tmp_path_factory.mktemp("spec") / "spec.yaml", data)
    code, _, err = run_cli("run", path, "--db", seeded, "--no-progress")
    assert_user_error(code, err)
    # the key as the spec reader reads it back: YAML 1.2 numbers such as 1e-3 are numbers there, which a
    # mapping of fields refuses as keys
    (read,) = yamlfile.parse_yaml(yaml.safe_dump({key: 0}, allow_unicode=True))
    assert "unknown" in err or (not isinstance(read, str) and "keys must be strings" in err), err
    assert db_state(seeded) == before


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=4),
    ),
    max_leaves=20,
)


@PROPERTY
@given(
    name=yaml_values,
    description=yaml_values,
    defaults=yaml_values,
    cases=yaml_values,
    grid=yaml_values,
    present=st.sets(st.sampled_from(spec_module.SPEC_KEYS)),
)
def test_structurally_wrong_specs_are_one_line_errors(
    name, description, defaults, cases, grid, present, tmp_path_factory, seeded
):
    """Random YAML values in every top-level slot (a spec that happens to be valid is only planned)."""
    data = {
        k: v
        for k, v in dict(name=name, description=description, defaults=defaults, cases=cases, grid=grid).items()
        if k in present
    }
    path = write_spec(tmp_path_factory.mktemp("spec") / "spec.yaml", data)
    before = db_state(seeded)
    code, _, err = run_cli("run", path, "--dry-run", "--db", seeded)
    try:
        expand(data)
        valid = True
    except Exception:  # noqa: BLE001  (what the CLI makes of it is what is checked)
        valid = False
    if valid:
        assert code == 0 and err == ""
    else:
        assert_user_error(code, err)
    assert db_state(seeded) == before


@PROPERTY
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda s: s.encode("utf-8"))))
@example(raw=b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
@example(raw=b"name: caf\xe9\ngrid: {model: [transformer]}\n")
@example(raw=b"\xef\xbb\xbf\x00\x00")
@example(raw=b"- a\n- b\n")
@example(raw=b"name: x\ngrid: !!python/object/apply:os.system [echo pwned]\n")
@example(raw=b"{{{{{{")
def test_random_bytes_and_yaml_garbage_are_one_line_errors(raw, tmp_path_factory, seeded):
    folder = tmp_path_factory.mktemp("spec")
    path = write_spec(folder / "garbage.yaml", raw)
    before = db_state(seeded)
    code, _, err = run_cli("run", path, "--db", seeded, "--no-progress")
    assert_user_error(code, err)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        assert "not valid UTF-8" in err
    assert db_state(seeded) == before
    assert listing(folder) == {"garbage.yaml"}


@pytest.mark.parametrize(
    "text, field",
    [
        (
            "name: x\ndefaults: {model: transformer, device: cpu}\ndefaults: {model: phase7}\ngrid: {seq_len: [8]}\n",
            "defaults",
        ),
        (
            "name: x\ndefaults: {model: transformer, seq_len: 8, device: cpu, seq_len: 16}\ngrid: {batch_size: [1]}\n",
            "seq_len",
        ),
    ],
)
def test_a_key_given_twice_is_refused_naming_it(text, field, tmp_path_factory, seeded):
    """PyYAML would keep the last value silently."""
    folder = tmp_path_factory.mktemp("spec")
    before = db_state(seeded)
    code, _, err = run_cli("run", write_spec(folder / "twice.yaml", text), "--db", seeded, "--no-progress")
    assert_user_error(code, err, contains=f"{field}: is given twice in one mapping")
    assert db_state(seeded) == before and listing(folder) == {"twice.yaml"}


def billion_laughs(width: int, depth: int, where: str) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, depth + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    body = "\n".join("  " + line for line in lines)
    top = f"*l{depth}"
    if where == "grid":
        return (
            f"name: bomb\ndefaults: {{model: transformer, device: cpu}}\nx-anchors:\n{body}\ngrid: {{seq_len: {top}}}\n"
        )
    return f"name: bomb\ndescription:\n  {top}\ndefaults:\n{body}\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(2, 12), depth=st.integers(1, 10), where=st.sampled_from(["grid", "defaults"]))
@example(width=10, depth=9, where="grid")
@example(width=10, depth=9, where="defaults")
@example(width=101, depth=1, where="defaults")
def test_yaml_alias_bombs_are_refused_quickly(width, depth, where, tmp_path_factory, seeded):
    import time

    path = write_spec(tmp_path_factory.mktemp("bomb") / "bomb.yaml", billion_laughs(width, depth, where))
    before = db_state(seeded)
    start = time.monotonic()
    code, _, err = run_cli("run", path, "--db", seeded, "--no-progress")
    assert time.monotonic() - start < 10, "an alias bomb was expanded"
    assert_user_error(code, err)
    aliases, nodes = width * depth, sum(width**k for k in range(1, depth + 2))
    if aliases > yamlfile.MAX_YAML_ALIASES or nodes > yamlfile.MAX_YAML_NODES:
        assert "alias" in err or "YAML values" in err, err
    assert db_state(seeded) == before


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(2, 60), min_size=2, max_size=5).filter(lambda s: math.prod(s) > spec_module.MAX_CONFIGS),
    cases=st.integers(1, 3),
)
def test_huge_grids_need_yes_and_write_nothing(sizes, cases, tmp_path_factory, seeded):
    axes = ["seed", "warmup_steps", "steps", "repeats", "batch_size"]
    grid = {axis: list(range(1, n + 1)) for axis, n in zip(axes, sizes, strict=False)}
    data = {"name": "huge", "defaults": TINY, "grid": grid, "cases": [{"seq_len": 16 + i} for i in range(cases)]}
    path = write_spec(tmp_path_factory.mktemp("huge") / "huge.yaml", data)
    before = db_state(seeded)
    for args in (("run", path, "--db", seeded, "--no-progress"), ("run", path, "--dry-run", "--db", seeded)):
        code, out, err = run_cli(*args)
        assert_user_error(code, err, contains="--yes")
        assert out == ""
    assert db_state(seeded) == before


def test_error_messages_stay_on_one_line_with_newlines_in_values(tmp_path, seeded, work):
    """A value or a path holding a newline must not split the error over two lines."""
    path = write_spec(tmp_path / "nl.yaml", {"name": "x", "defaults": TINY, "grid": {"precision": ["fp32\nfp16"]}})
    code, _, err = run_cli("run", path, "--db", seeded, "--no-progress")
    assert_user_error(code, err, contains="precision")
    code, _, err = run_cli("status", "--db", f"sqlite:///{tmp_path}/no\nfolder/pb.db")
    assert_user_error(code, err)
    assert not (tmp_path / "no\nfolder").exists()


def test_spec_larger_than_the_limit_through_a_pipe_is_refused(tmp_path):
    """The size limit holds for a spec that is not a regular file (`run /dev/stdin`, a FIFO)."""
    valid = yaml.safe_dump({"name": "piped", "defaults": TINY, "grid": {"seq_len": [16]}}).encode()
    padding = b"# padding\n" * (yamlfile.MAX_SPEC_BYTES // 10 + 10)
    result = phasebench("run", "/dev/stdin", "--dry-run", cwd=tmp_path, stdin=padding + valid)
    assert_user_error(result.returncode, result.stderr.decode(errors="replace"), contains="larger than")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------- argument properties
def surrogate_text(raw: bytes) -> str:
    """How Python hands a program non-UTF-8 bytes in argv."""
    return raw.decode("utf-8", "surrogateescape")


FREE_TEXT = st.one_of(
    st.text(max_size=20),
    st.binary(min_size=1, max_size=12).map(surrogate_text),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        [
            "99999999999999999999999",
            "-1",
            "1e400",
            ".nan",
            "!!binary aGk=",
            "\u00b2",
            "\u0661",
            "[1, 2]",
            "{a: 1}",
            "' OR 1=1 --",
            "\udcff\udcfe",
            "%",
            "_",
            "*",
        ]
    ),
).filter(lambda s: "\x00" not in s)  # argv is C strings: a NUL cannot reach a real command line
WHERE_FIELDS = sorted(FIELDS)


def names_the_seeded_batch(text: str) -> bool:
    try:
        return text == "kept" or int(text) == 1
    except ValueError:
        return False


@st.composite
def free_text_commands(draw) -> list[str]:
    text = draw(FREE_TEXT)
    kind = draw(
        st.sampled_from(
            ["status", "batch", "model", "status-filter", "show", "resume", "where", "export-where", "spec"]
        )
    )
    if kind == "status":
        return ["status", text]
    if kind == "batch":
        return ["results", "list", "--batch", text]
    if kind == "model":
        return ["results", "list", "--model", text]
    if kind == "status-filter":
        return ["results", "list", "--status", text]
    if kind == "show":
        return ["results", "show", text]
    if kind == "resume":
        assume(not names_the_seeded_batch(text))  # resuming the real batch would run it
        return ["run", "--resume", text]
    if kind == "spec":
        return ["run", text or "x", "--dry-run"]
    field = draw(st.sampled_from(WHERE_FIELDS))
    return ["results", "list" if kind == "where" else "export", "--where", f"{field}={text}"]


def check_free_text(url: str, argv: list[str]) -> None:
    before = db_state(url)
    code, _, err = run_cli(*argv, "--db", url)
    if code != 0:
        assert_user_error(code, err)
    else:
        assert "Traceback" not in err
    assert db_state(url) == before


@PROPERTY
@given(argv=free_text_commands())
@example(argv=["results", "list", "--where", "model=\udcff"])
@example(argv=["status", "\udcff"])
@example(argv=["status", "99999999999999999999999"])
@example(argv=["results", "list", "--batch", "99999999999999999999999"])
@example(argv=["run", "--resume", "99999999999999999999999"])
def test_free_text_arguments_on_sqlite(argv, seeded, work):
    """Any text (non-UTF-8 bytes, NUL, huge numbers, SQL) as a batch, model, status, run id or --where value."""
    check_free_text(seeded, argv)
    assert listing(work) == set()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(argv=free_text_commands())
@example(argv=["results", "list", "--where", "model=1"])
@example(argv=["results", "list", "--where", "d_model=true"])
@example(argv=["results", "list", "--where", "tie_head=3"])
@example(argv=["status", "\u00b2"])
@example(argv=["status", "99999999999999999999999"])
def test_free_text_arguments_on_postgresql(argv, pg_url, work):
    """The same against PostgreSQL, which is stricter about types, NUL bytes and integer ranges."""
    if db_state(pg_url)["tables"] == []:
        seed_batch(pg_url)
    check_free_text(pg_url, argv)
    assert listing(work) == set()


def not_an_int_at_least_1(text: str) -> bool:
    try:
        return int(text.strip()) < 1
    except ValueError:
        return True


@PROPERTY
@given(
    option=st.sampled_from(["--format", "--mode", "--device", "--max-parallel"]),
    value=st.one_of(st.text(max_size=12), st.integers(max_value=0).map(str)),
)
def test_option_values_out_of_range_or_of_the_wrong_type(option, value, tmp_path_factory, seeded, work):
    choices = {
        "--format": ("table", "json", "csv"),
        "--mode": ("inference", "train_no_optim", "train"),
        "--device": ("cuda", "cpu"),
    }
    if option == "--max-parallel":
        assume(not_an_int_at_least_1(value))
        path = write_spec(
            tmp_path_factory.mktemp("spec") / "spec.yaml", {"name": "x", "defaults": TINY, "grid": {"seq_len": [16]}}
        )
        argv = ["run", path, "--dry-run", "--max-parallel", value]
    else:
        assume(value not in choices[option])
        argv = ["results", "list", option, value]
    before = db_state(seeded)
    code, out, err = run_cli(*argv, "--db", seeded)
    assert_user_error(code, err)
    assert out == ""
    assert db_state(seeded) == before
    assert listing(work) == set()


@PROPERTY
@given(
    argv=st.lists(
        st.one_of(st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10).map(lambda s: "--" + s)),
        min_size=1,
        max_size=4,
    ).filter(lambda argv: not any("\x00" in a for a in argv))
)
def test_unknown_commands_and_options(argv, seeded, work):
    assume(argv[0] not in ("run", "status", "results", "db", "env", "dashboard", "--help", "-h", "--version"))
    assume(not any(a in ("--help", "-h", "--version") for a in argv))
    code, out, err = run_cli(*argv, "--db", seeded)
    assert_user_error(code, err)
    assert listing(work) == set()


# ---------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("spec", ["missing.yaml", "no/such/folder/spec.yaml", "", ".", "/"])
def test_missing_or_unusable_spec_paths(spec, seeded, work):
    before = db_state(seeded)
    code, _, err = run_cli("run", spec, "--db", seeded, "--no-progress")
    assert_user_error(code, err)
    assert db_state(seeded) == before
    assert listing(work) == set()


def test_unreadable_spec_file(tmp_path, seeded, work):
    """Mode 000 stops a normal user from reading the spec; root reads it anyway, and then the (invalid)
    content is what is refused. Either way: one line, exit 2, nothing written."""
    path = tmp_path / "secret.yaml"
    write_spec(path, {"name": "x", "defaults": TINY | {"n_heads": 3}, "grid": {"seq_len": [16]}})
    path.chmod(0)
    try:
        readable = os.access(path, os.R_OK)
        before = db_state(seeded)
        code, _, err = run_cli("run", str(path), "--db", seeded, "--no-progress")
        assert_user_error(code, err, contains="n_heads" if readable else "cannot be read")
        assert db_state(seeded) == before
    finally:
        path.chmod(0o644)


# ------------------------------------------------------------------------------------- databases
COMMANDS = [
    ["status"],
    ["status", "1"],
    ["results", "list"],
    ["results", "export"],
    ["results", "show", "ab"],
    ["run", "--resume", "1"],
    ["dashboard", "build", "--out", "report.html"],
]


@pytest.mark.parametrize("argv", COMMANDS + [["db", "current"]], ids=" ".join)
def test_missing_database_file_is_not_created(argv, tmp_path, work):
    """Reading commands against a database that does not exist must not create it."""
    db = tmp_path / "nothing-here.db"
    code, out, err = run_cli(*argv, "--db", f"sqlite:///{db}")
    if argv == ["db", "current"] and code == 0:
        assert "current: (empty)" in out and err == ""
    else:
        assert_user_error(code, err)
    assert not list(tmp_path.glob("nothing-here.db*")), "a database file was created by a read"
    assert listing(work) == set()


@pytest.mark.parametrize("argv", COMMANDS + [["db", "upgrade"], ["db", "current"], ["run", "SPEC"]], ids=" ".join)
def test_database_path_is_a_directory(argv, tmp_path, work):
    folder = tmp_path / "pb.db"
    folder.mkdir()
    argv = [
        str(write_spec(tmp_path / "ok.yaml", {"name": "x", "defaults": TINY, "grid": {"seq_len": [16]}}))
        if a == "SPEC"
        else a
        for a in argv
    ]
    code, _, err = (
        run_cli(*argv, "--db", f"sqlite:///{folder}", "--no-progress")
        if argv[0] == "run"
        else run_cli(*argv, "--db", f"sqlite:///{folder}")
    )
    assert_user_error(code, err)
    assert list(folder.iterdir()) == []
    assert listing(work) == set()


@pytest.mark.parametrize("argv", COMMANDS + [["db", "upgrade"], ["db", "current"], ["run", "SPEC"]], ids=" ".join)
def test_database_in_a_missing_folder(argv, tmp_path, work):
    argv = [
        str(write_spec(tmp_path / "ok.yaml", {"name": "x", "defaults": TINY, "grid": {"seq_len": [16]}}))
        if a == "SPEC"
        else a
        for a in argv
    ]
    code, _, err = run_cli(*argv, "--db", f"sqlite:///{tmp_path}/missing/folder/pb.db")
    assert_user_error(code, err, contains="does not exist")
    assert not (tmp_path / "missing").exists()
    assert listing(work) == set()


@pytest.mark.parametrize("argv", [["status"], ["results", "list"], ["db", "upgrade"], ["run", "BAD"]], ids=" ".join)
def test_database_file_with_mode_000(argv, tmp_path, seeded, work):
    """Without root, mode 000 makes the database unusable: one-line error. Root (as in CI) ignores file
    modes, so there the command works on the intact database; either way no row is added or lost."""
    argv = [
        str(
            write_spec(
                tmp_path / "bad.yaml", {"name": "x", "defaults": TINY | {"seq_len": 0}, "grid": {"n_layers": [1]}}
            )
        )
        if a == "BAD"
        else a
        for a in argv
    ]
    before = db_state(seeded)
    path = sqlite_path(seeded)
    path.chmod(0)
    try:
        usable = os.access(path, os.R_OK | os.W_OK)
        code, out, err = run_cli(*argv, "--db", seeded)
        assert "Traceback" not in err
        if argv[0] == "run":
            assert_user_error(code, err, contains="seq_len")
        elif usable:  # root
            assert code == 0, err
        else:
            assert_user_error(code, err, contains="not readable")
        assert stat.S_IMODE(path.stat().st_mode) == 0
    finally:
        path.chmod(0o644)
    assert db_state(seeded) == before
    assert listing(work) == set()


@pytest.mark.parametrize("argv", COMMANDS + [["db", "upgrade"], ["run", "SPEC"]], ids=" ".join)
def test_database_from_a_newer_phasebench(argv, tmp_path, seeded, work):
    """A schema revision this phasebench does not know: refused, the database left exactly as it was."""
    stamp(seeded, FUTURE_REVISION)
    argv = [
        str(write_spec(tmp_path / "ok.yaml", {"name": "x", "defaults": TINY, "grid": {"seq_len": [16]}}))
        if a == "SPEC"
        else a
        for a in argv
    ]
    before = db_state(seeded)
    code, out, err = run_cli(*argv, "--db", seeded)
    assert_user_error(code, err)
    assert FUTURE_REVISION in err or "newer" in err
    after = db_state(seeded)
    assert after == before and after["revision"] == [FUTURE_REVISION]
    assert listing(work) == set()


def test_db_current_reports_a_newer_revision_without_touching_it(seeded):
    stamp(seeded, FUTURE_REVISION)
    before = db_state(seeded)
    code, out, err = run_cli("db", "current", "--db", seeded)
    assert code == 0 and f"current: {FUTURE_REVISION}" in out and f"head: {head_revision()}" in out
    assert db_state(seeded) == before


def test_nul_in_a_spec_name_is_refused_before_postgresql_sees_it(tmp_path, pg_url, work):
    """PostgreSQL text cannot hold NUL: a spec whose name or description has one is bad input."""
    seed_batch(pg_url)
    before = db_state(pg_url)
    for data in (
        {"name": "a\x00b", "defaults": TINY, "grid": {"seq_len": [16]}},
        {"name": "ok", "description": "x\x00y", "defaults": TINY, "grid": {"seq_len": [16]}},
    ):
        path = write_spec(tmp_path / "nul.yaml", data)
        code, _, err = run_cli("run", path, "--db", pg_url, "--no-progress")
        assert_user_error(code, err)
        assert db_state(pg_url) == before


# --------------------------------------------------------------------------- the real entry point
def test_entry_point_alias_bomb(tmp_path):
    path = write_spec(tmp_path / "bomb.yaml", billion_laughs(10, 9, "grid"))
    result = phasebench("run", path, "--db", f"sqlite:///{tmp_path}/pb.db", cwd=tmp_path)
    assert_user_error(result.returncode, result.stderr.decode(), contains="alias")
    assert sorted(os.listdir(tmp_path)) == ["bomb.yaml"]


def test_entry_point_newer_database(tmp_path, seeded):
    stamp(seeded, FUTURE_REVISION)
    before = db_state(seeded)
    for args in (["status"], ["db", "upgrade"]):
        result = phasebench(*args, "--db", seeded, cwd=tmp_path)
        assert_user_error(result.returncode, result.stderr.decode(), contains=FUTURE_REVISION)
    assert db_state(seeded) == before


def test_entry_point_missing_database_and_non_utf8_argument(tmp_path):
    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path}/db/absent.db"
    result = phasebench("status", "--db", url, cwd=tmp_path)
    assert_user_error(result.returncode, result.stderr.decode())
    assert os.listdir(tmp_path / "db") == []
    seed_batch(f"sqlite:///{tmp_path}/db/pb.db")
    # bytes that are not UTF-8, as a shell passes them: os.fsencode keeps them as they are
    result = phasebench(
        "results",
        "list",
        "--where",
        os.fsencode("model=\udcff\udcfe"),
        "--db",
        f"sqlite:///{tmp_path}/db/pb.db",
        cwd=tmp_path,
    )
    assert "Traceback" not in result.stderr.decode(errors="replace")
    assert result.returncode in (0, 2)
    if result.returncode == 2:
        assert_user_error(2, result.stderr.decode(errors="replace"))


def corrupt_databases(folder: Path) -> dict[str, str]:
    """Files that are not SQLite databases, or URLs that cannot hold results -> the --db value."""
    random_bytes = folder / "random.db"
    random_bytes.write_bytes(bytes(range(256)) * 20)
    header = folder / "header.db"
    header.write_bytes(b"SQLite format 3\x00" + bytes(range(255, -1, -1)) * 16)
    truncated = folder / "truncated.db"
    Store(f"sqlite:///{truncated}", create=True).close()
    truncated.write_bytes(truncated.read_bytes()[:1500])
    return {
        "random bytes": f"sqlite:///{random_bytes}",
        "header over garbage": f"sqlite:///{header}",
        "truncated": f"sqlite:///{truncated}",
        "a device": "sqlite:////dev/null",
        "in memory": "sqlite:///:memory:",
        "query parameters": f"sqlite:///{folder / 'q.db'}?mode=ro",
        "empty": "",
    }


@pytest.mark.parametrize(
    "kind", ["random bytes", "header over garbage", "truncated", "a device", "in memory", "query parameters", "empty"]
)
@pytest.mark.parametrize("argv", COMMANDS + [["db", "upgrade"], ["db", "current"], ["run", "SPEC"]], ids=" ".join)
def test_a_database_that_cannot_hold_results_is_a_one_line_error(kind, argv, tmp_path, work):
    folder = tmp_path / "dbs"
    folder.mkdir()
    url = corrupt_databases(folder)[kind]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    spec = str(write_spec(tmp_path / "ok.yaml", {"name": "x", "defaults": TINY, "grid": {"seq_len": [16]}}))
    argv = [spec if a == "SPEC" else a for a in argv] + (["--no-progress"] if argv[0] == "run" else [])
    code, _, err = run_cli(*argv, "--db", url)
    assert_user_error(code, err, contains="--db")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert listing(work) == set()


@pytest.mark.parametrize("option", ["--kernels", "--from-export"])
def test_an_endless_dashboard_input_is_refused_at_its_bound(option, seeded, tmp_path):
    out = tmp_path / "report.html"
    code, _, err = run_cli("dashboard", "build", option, "/dev/zero", "--db", seeded, "--out", str(out))
    assert_user_error(code, err, contains=f"{option}: /dev/zero is larger than")
    assert not out.exists()


def test_an_unreachable_ray_address_is_a_one_line_error_before_anything_is_written(tmp_path, seeded, work):
    """Ray keeps retrying a dead head for minutes; the driver answers within the connect timeout."""
    spec = str(write_spec(tmp_path / "ok.yaml", {"name": "x", "defaults": TINY, "grid": {"seq_len": [16]}}))
    before = db_state(seeded)
    for argv in (["run", spec, "--no-progress"], ["run", "--resume", "1"]):
        code, _, err = run_cli(*argv, "--db", seeded, "--address", "127.0.0.1:1")
        assert_user_error(code, err, contains="--address: cannot reach the Ray head at 127.0.0.1:1")
    assert db_state(seeded) == before
    fresh = tmp_path / "fresh.db"
    code, _, err = run_cli("run", spec, "--db", f"sqlite:///{fresh}", "--address", "ray://127.0.0.1:1")
    assert_user_error(code, err, contains="--address")
    assert not fresh.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"device": "cuda"}, "device: the Ray cluster has no GPU"),
        ({"num_cpus": 512}, "num_cpus: no node of the Ray cluster has that many CPUs"),
        ({"job": "train", "data": "./nowhere"}, "data: no such file or folder"),
        ({"d_model": 65536, "n_heads": 64, "n_layers": 1024}, "for 52,777,061,515,264 parameters"),  # 196,610 GiB
    ],
    ids=["no GPU", "512 CPUs", "missing data", "52 trillion parameters"],
)
def test_what_the_cluster_can_never_run_is_refused_before_anything_is_stored(change, message, tmp_path):
    """Checked against the cluster it would run on (here a local Ray on this machine), not at run time."""
    if change.get("device") == "cuda" and shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU")
    spec = write_spec(tmp_path / "spec.yaml", {"name": "never", "defaults": TINY | change, "grid": {"seed": [0, 1]}})
    db = tmp_path / "pb.db"
    done = phasebench("run", spec, "--db", f"sqlite:///{db}", "--no-progress", cwd=tmp_path)
    assert_user_error(done.returncode, done.stderr.decode(), contains=message)
    assert not db.exists()
