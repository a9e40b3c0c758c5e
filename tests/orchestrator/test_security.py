"""Security: passwords never shown, `--where` is data not SQL, the dashboard escapes user strings, output
goes only where asked, Ray keeps token authentication on."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import re
import traceback
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa
from cli_helpers import REPO
from cli_helpers import TINY as CLI_TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orchestrator.runner
from dashboards import memory, report, runs, scaling
from orchestrator import api
from orchestrator.errors import UserError
from orchestrator.spec import ResolvedRun, Spec, expand
from orchestrator.store.engine import mask_text
from orchestrator.store.repository import Filters, Store
from phasebench.cli import main

TINY = {"model": "transformer"} | CLI_TINY
SECRET = "Zq9-s3cr3t-pw"
SECRET_FORMS = (SECRET, "s3cr3t")  # the password and a distinctive part of it (a truncated leak)


# ------------------------------------------------------------------------------------------ helpers
def call(*args: str) -> tuple[int | str, str, str]:
    """main() in-process; a crash is returned as code 'crash' with its traceback in stderr (so a leak in
    an exception message is caught too)."""
    out, err = io.StringIO(), io.StringIO()
    code: int | str = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # noqa: BLE001
            code = "crash"
            err.write(traceback.format_exc())
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code, err: str) -> None:
    assert code == 2, f"exit {code}: {err}"
    lines = re.split(r"\r\n|\r|\n", err.strip("\n"))
    assert len(lines) == 1 and lines[0].startswith("error: "), err


def assert_no_secret(*texts: str, secret_forms=SECRET_FORMS) -> None:
    for text in texts:
        for form in secret_forms:
            assert form not in text, f"password {form!r} leaked: {text[:2000]!r}"


def state(url: str) -> dict[str, object]:
    engine = sa.create_engine(url)
    try:
        tables = sorted(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            counts = {t: conn.exec_driver_sql(f'SELECT COUNT(*) FROM "{t}"').scalar() for t in tables}
    finally:
        engine.dispose()
    return {"tables": tables, **counts}


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(autouse=True)
def no_ray_runs(monkeypatch):
    """These tests never run a batch: a command that would is a failure, not a 30 s Ray start."""

    def tripwire(*args, **kwargs):
        raise AssertionError("a security test reached the Ray runner")

    monkeypatch.setattr(orchestrator.runner.Runner, "run_batch", tripwire)
    monkeypatch.delenv("PHASEBENCH_DB", raising=False)


@pytest.fixture
def logs(caplog):
    """Every log record of every logger, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    return caplog


# ------------------------------------------------------------------------------------ passwords
CLOSED = f"postgresql://alice:{SECRET}@127.0.0.1:1/pb"  # nothing listens on port 1
DB_COMMANDS = [
    ["status"],
    ["status", "3"],
    ["results", "list"],
    ["results", "export"],
    ["results", "show", "ab"],
    ["db", "upgrade"],
    ["db", "current"],
    ["run", "--resume", "1"],
    ["dashboard", "build", "--out", "report.html"],
]


@pytest.mark.parametrize("argv", DB_COMMANDS, ids=" ".join)
def test_connection_errors_mask_the_password(argv, logs, work):
    code, out, err = call(*argv, "--db", CLOSED)
    assert_no_secret(out, err, logs.text, *(r.getMessage() for r in logs.records))
    assert_one_line_error(code, err)
    assert "alice:***@127.0.0.1:1" in err
    assert listing(work) == set()


@pytest.mark.parametrize("argv", [["status"], ["results", "list"], ["db", "upgrade"], ["env"]], ids=" ".join)
def test_password_from_the_environment_variable_is_masked(argv, monkeypatch, logs, work):
    monkeypatch.setenv("PHASEBENCH_DB", CLOSED)
    code, out, err = call(*argv)
    assert_no_secret(out, err, logs.text)
    if argv == ["env"]:
        assert code == 0 and "postgresql://alice:***@127.0.0.1:1/pb" in out
    else:
        assert_one_line_error(code, err)
        assert "***" in err


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://alice:{SECRET}@127.0.0.1:notaport/pb",
        f"postgresql://alice:{SECRET}@[::1/pb",
        f"postgresql+nodriver://alice:{SECRET}@db.example/pb",
        f"mysql://alice:{SECRET}@db.example/pb",
        f"alice:{SECRET}@db.example/pb",
        f"sqlite://alice:{SECRET}@/x.db",
        f"postgresql://alice:{SECRET}@127.0.0.1:99999/pb",
        f"postgresql://alice:{SECRET}%40%3A%2F@127.0.0.1:1/pb",
    ],
    ids=[
        "bad-port",
        "bad-ipv6",
        "no-driver",
        "missing-driver",
        "no-scheme",
        "sqlite-with-password",
        "port-out-of-range",
        "percent-encoded",
    ],
)
@pytest.mark.parametrize(
    "argv", [["status"], ["results", "list"], ["db", "upgrade"], ["env"], ["env", "--json"]], ids=" ".join
)
def test_malformed_urls_with_a_password_are_masked(url, argv, logs, work):
    code, out, err = call(*argv, "--db", url)
    assert_no_secret(out, err, logs.text)
    if argv[0] == "env":
        assert code == 0
        database = (
            json.loads(out)["database"]
            if "--json" in argv
            else next(line for line in out.splitlines() if line.strip().startswith("database:"))
        )
        assert "alice" not in database or "***" in database
    else:
        assert_one_line_error(code, err)
    assert listing(work) == set()


def _secret_pg_url(pg_url: str) -> tuple[str, tuple[str, ...]]:
    """pg_url with a distinctive password when the server lets it in (trust authentication, as
    provisioned); otherwise pg_url itself, whose `user:password@` must then not appear."""
    url = sa.engine.make_url(pg_url)
    candidate = url.set(password=SECRET).render_as_string(hide_password=False)
    engine = sa.create_engine(candidate)
    try:
        with engine.connect():
            pass
        return candidate, SECRET_FORMS
    except sa.exc.OperationalError:
        return pg_url, (f"{url.username}:{url.password}@",)
    finally:
        engine.dispose()


def test_working_postgresql_session_never_shows_the_password(pg_url, logs, work):
    """db upgrade, status, results and a dashboard against a live server: password in no output or log."""
    url, forms = _secret_pg_url(pg_url)
    outputs = []
    for argv in (
        ["db", "upgrade"],
        ["db", "current"],
        ["status"],
        ["results", "list"],
        ["results", "export", "--format", "csv"],
        ["env", "--json"],
        ["dashboard", "build", "--out", "r.html"],
        ["status", "nope"],
    ):
        code, out, err = call(*argv, "--db", url)
        outputs += [out, err]
        assert code == (2 if argv == ["status", "nope"] else 0), (argv, err)
    html_text = (work / "r.html").read_text(encoding="utf-8")
    assert_no_secret(*outputs, html_text, logs.text, *(r.getMessage() for r in logs.records), secret_forms=forms)


# ------------------------------------------------------------------------------------ --where
HOSTILE = [
    "x' OR '1'='1",
    "'; DROP TABLE pb_runs; --",
    "fp32' UNION SELECT id, name FROM pb_batches --",
    '") OR 1=1 --',
    "fp%",
    "_p32",
    "$.model",
    "a\\'b",
    "1; DELETE FROM pb_batches",
    "Robert'); DROP TABLE pb_batches;--",
]


def hostile_batch(url: str) -> None:
    """A plain batch (two runs), and a batch named like an injection whose runs' `precision` hold the
    hostile strings (stored through the store API: the spec check would refuse them, the store must not
    care what a config holds)."""
    store = Store(url)
    try:
        plain = expand({"name": "plain", "defaults": TINY, "grid": {"seq_len": [16, 32]}})
        store.create_batch(plain)
        base = plain.runs[0]
        runs = [
            ResolvedRun(i, base.config | {"precision": value}, f"{i:016x}", base.params)
            for i, value in enumerate(HOSTILE)
        ]
        store.create_batch(Spec(HOSTILE[1], "", runs, {"name": HOSTILE[1]}))
    finally:
        store.close()


def test_where_values_are_matched_literally(db_url, work):
    hostile_batch(db_url)
    before = state(db_url)
    assert before["pb_runs"] == 2 + len(HOSTILE)
    for value in HOSTILE:
        code, out, err = call("results", "list", "--where", f"precision={value}", "--format", "json", "--db", db_url)
        assert code == 0, err
        rows = json.loads(out)
        assert len(rows) == 1, (value, rows)
        code, out, err = call("results", "export", "--where", f"precision={value}", "--db", db_url)
        assert code == 0, err
        assert [r["config"]["precision"] for r in json.loads(out)] == [value]
    code, out, err = call("results", "list", "--where", "precision=fp32", "--format", "json", "--db", db_url)
    assert code == 0 and len(json.loads(out)) == 2, err  # the two plain runs, not fp% nor _p32
    code, out, err = call("results", "list", "--batch", HOSTILE[1], "--format", "json", "--db", db_url)
    assert code == 0 and len(json.loads(out)) == len(HOSTILE), err
    code, out, err = call("status", HOSTILE[1], "--json", "--db", db_url)
    assert code == 0 and len(json.loads(out)) == len(HOSTILE), err
    assert state(db_url) == before


@pytest.mark.parametrize("option", ["--model", "--batch", "--status", "--where"])
def test_hostile_values_in_every_filter_leave_the_database_intact(option, db_url, work):
    hostile_batch(db_url)
    before = state(db_url)
    for value in HOSTILE + ["%", "*", "' OR ''='"]:
        arg = f"model={value}" if option == "--where" else value
        code, out, err = call("results", "list", option, arg, "--format", "json", "--db", db_url)
        assert code == 0, err
        expected = len(HOSTILE) if option == "--batch" and value == HOSTILE[1] else 0
        assert len(json.loads(out)) == expected, (option, value)
    assert state(db_url) == before


def test_hostile_where_keys_are_refused_by_the_cli_and_inert_in_the_store(db_url, work):
    hostile_batch(db_url)
    before = state(db_url)
    keys = [
        "x') OR 1=1 --",
        "precision') IS NOT NULL OR ('",
        'a"b',
        "$.precision",
        'precision" OR "1',
        "model'); DROP TABLE pb_runs; --",
        "*",
        "precision[0]",
        "precision.x",
        "\\",
    ]
    for key in keys:
        code, _, err = call("results", "list", "--where", f"{key}=1", "--db", db_url)
        assert_one_line_error(code, err)
        assert "unknown field" in err
    store = Store(db_url, create=False)
    try:
        for key in keys:
            for value in ("fp32", "x' OR '1'='1", 1, True):
                try:  # the store API may refuse a key it cannot name literally, as a user error
                    rows = store.rows(Filters(where=((key, value),)))
                except UserError:
                    continue
                assert rows == [], (key, value)
    finally:
        store.close()
    assert state(db_url) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30))
def test_any_text_value_matches_only_itself(value, db_url):
    """Store API, both backends: `precision == value` finds exactly the stored runs holding that string."""
    store = Store(db_url)
    try:
        if not store.batches():
            store.close()
            hostile_batch(db_url)
            store = Store(db_url)
        before = state(db_url)
        rows = store.rows(Filters(where=(("precision", value),)))
        expected = HOSTILE.count(value) + (2 if value == "fp32" else 0)
        assert len(rows) == expected
        assert all(r["config"]["precision"] == value for r in rows)
        assert state(db_url) == before
    finally:
        store.close()


# ------------------------------------------------------------------------------------ dashboard
XSS = [
    '<script>alert("pb-xss-1")</script>',
    '<img src=x onerror=alert("pb-xss-2")>',
    '"><svg onload=alert("pb-xss-3")>',
    "</script><script>alert('pb-xss-4')</script>",
    "javascript:alert('pb-xss-5')",
    "<!--",
    "]]>",
    "{{7*7}}",
]


class Collector(HTMLParser):
    """Elements, attributes, script bodies and visible text of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value) for name, value in attrs]
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "script":
            self._in_script = False

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def row_figures(rows: list[dict]) -> int:
    """How many figures the report draws from result rows (memory, breakdown, scaling)."""
    return len(report.memory_figures(rows)) + len(memory.breakdown_figures(rows)) + len(scaling.scaling_figures(rows))


def check_page(page: str, expected_figures: int) -> Collector:
    parser = Collector()
    parser.feed(page)
    parser.close()
    assert not [a for a in parser.attrs if a[1].lower().startswith("on")], "event-handler attribute in the page"
    # a javascript: URL only runs where the browser navigates to it; in data-* or an option value it is text
    assert not [
        a
        for a in parser.attrs
        if a[1].lower() in ("href", "src", "action", "formaction")
        and (a[2] or "").strip().lower().startswith("javascript:")
    ]
    assert not {"img", "svg", "iframe", "object", "embed"} & set(parser.tags), set(parser.tags)
    # one script for plotly.js, one Plotly.newPlot per figure and the run table's fixed script, nothing else
    own = [body for body in parser.scripts if body == runs.SCRIPT]
    plots = [body for body in parser.scripts if body != runs.SCRIPT]
    assert len(own) == 1 and len(plots) == 1 + expected_figures, (len(own), len(plots))
    assert "plotly" in plots[0].lower() and len(plots[0]) > 1_000_000
    for body in plots[1:]:
        assert "Plotly.newPlot(" in body
        # data inside the figure's JSON: nothing that could end or re-open a script, or hide its end tag
        assert "<script" not in body.lower() and "</script" not in body.lower() and "<!--" not in body
    return parser


def rows_with_strings(tmp_path: Path) -> list[dict]:
    """Real result rows (a SQLite store), with every user-supplied string replaced by hostile HTML."""
    url = f"sqlite:///{tmp_path / 'xss.db'}"
    store = Store(url)
    try:
        spec = expand({"name": XSS[0], "defaults": TINY, "grid": {"seq_len": [16, 32]}})
        batch = store.create_batch(spec)
        rows = store.rows(Filters(batch=(str(batch.id),)))
        for i, row in enumerate(rows):
            store.record_result(
                row["run_id"],
                {
                    "status": "failed",
                    "error": XSS[1 + i],
                    "stage": XSS[3],
                    "weights_bytes": 2**20,
                    "peak_bytes": 2**21,
                    "activation_bytes": 2**20,
                },
            )
        rows = store.rows(Filters(batch=(str(batch.id),)))
    finally:
        store.close()
    for i, row in enumerate(rows):
        row.update(model=XSS[i % 2 + 1], mode=XSS[2], device=XSS[3], gpu_name=XSS[4], status=XSS[0])
    return rows


def test_report_escapes_user_strings(tmp_path):
    rows = rows_with_strings(tmp_path)
    out = tmp_path / "report.html"
    kwargs = {}
    curves_figures = 0
    if "curves" in inspect.signature(report.write_report).parameters:  # training curves, where supported
        train = dict(rows[0], run_id="t" * 32, config=rows[0]["config"] | {"job": "train"})
        rows.append(train)
        kwargs["curves"] = {
            train["run_id"]: [
                {"kind": "train", "step": 1, "tokens": 16, "elapsed_s": 0.5, "loss": 3.0, "val_loss": None},
                {"kind": "eval", "step": 1, "tokens": 16, "elapsed_s": 0.5, "loss": None, "val_loss": 3.1},
            ]
        }
        curves_figures = len(report.curve_figures(rows, kwargs["curves"]))
    report.write_report(rows, out, title=XSS[3], **kwargs)
    page = out.read_text(encoding="utf-8")
    figures = row_figures(rows) + curves_figures
    assert figures >= 2
    parser = check_page(page, figures)
    text = "".join(parser.text)
    assert XSS[0] in text and XSS[3] in text  # shown as text, not dropped
    assert page.count("<script") == 2 + figures  # plotly.js, the run table's script, one per figure


def test_dashboard_build_escapes_a_hostile_batch_name(tmp_path, work):
    url = f"sqlite:///{tmp_path / 'pb.db'}"
    store = Store(url)
    try:
        batch = store.create_batch(expand({"name": XSS[3], "defaults": TINY, "grid": {"seq_len": [16]}}))
        run_id = store.rows()[0]["run_id"]
        store.record_result(
            run_id, {"status": "failed", "error": XSS[1], "weights_bytes": 1, "peak_bytes": 2, "activation_bytes": 1}
        )
    finally:
        store.close()
    code, out, err = call("dashboard", "build", "--db", url, "--batch", str(batch.id), "--out", "r.html")
    assert code == 0, err
    parser = check_page((work / "r.html").read_text(encoding="utf-8"), expected_figures=row_figures(api.results(url)))
    assert XSS[3] in "".join(parser.text)


# ---------------------------------------------------------------------------------- output paths
@pytest.fixture
def stored(tmp_path) -> str:
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder / 'pb.db'}"
    store = Store(url)
    try:
        store.create_batch(expand({"name": "files", "defaults": TINY, "grid": {"seq_len": [16, 32]}}))
    finally:
        store.close()
    return url


def db_folder_listing(url: str) -> set[str]:
    folder = Path(sa.engine.make_url(url).database).parent
    return {p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm"))}


def test_dashboard_writes_only_its_out_file_creating_its_folder(stored, work):
    db_files = db_folder_listing(stored)
    code, out, err = call("dashboard", "build", "--db", stored, "--out", "site/a/report.html")
    assert code == 0, err
    assert listing(work) == {"site", "site/a", "site/a/report.html"}
    assert db_folder_listing(stored) == db_files


def test_export_writes_only_its_out_file(stored, work):
    db_files = db_folder_listing(stored)
    code, _, err = call("results", "export", "--db", stored, "--format", "csv", "--out", "rows.csv")
    assert code == 0, err
    assert listing(work) == {"rows.csv"}
    assert len((work / "rows.csv").read_text().strip().splitlines()) == 3
    assert db_folder_listing(stored) == db_files


def test_export_into_a_missing_folder_is_refused_and_creates_nothing(stored, work):
    """Only the dashboard creates the folder of its --out; export says so in one line and writes nothing."""
    code, _, err = call("results", "export", "--db", stored, "--out", "missing/rows.json")
    assert_one_line_error(code, err)
    assert listing(work) == set()


@pytest.mark.parametrize(
    "argv",
    [
        ["dashboard", "build", "--out", "out/r.html", "--db", "DB", "--batch", "nope"],
        ["results", "export", "--out", "rows.json", "--db", "DB", "--where", "bogus=1"],
        ["dashboard", "build", "--out", "r.html", "--db", "sqlite:///ABSENT"],
        ["results", "export", "--out", "rows.json", "--db", "sqlite:///ABSENT"],
    ],
    ids=["dashboard-unknown-batch", "export-bad-where", "dashboard-no-db", "export-no-db"],
)
def test_failed_commands_write_no_output_file(argv, stored, tmp_path, work):
    argv = [stored if a == "DB" else a.replace("ABSENT", str(tmp_path / "absent.db")) for a in argv]
    code, _, err = call(*argv)
    if "nope" in argv:  # an unknown batch filters to nothing: an empty report is fine, in the chosen place
        assert code == 0 and listing(work) == {"out", "out/r.html"}
        return
    assert_one_line_error(code, err)
    assert listing(work) == set()
    assert not (tmp_path / "absent.db").exists()


def test_reading_without_db_does_not_create_the_default_database(work):
    code, _, err = call("status")
    assert_one_line_error(code, err)
    assert listing(work) == set()


# ------------------------------------------------------------------------------------------ Ray auth
AUTH_OFF = re.compile(r"AUTH_MODE.{0,40}disabled|disabled.{0,40}AUTH_MODE", re.IGNORECASE)


def test_no_code_turns_ray_token_authentication_off():
    """Nothing in the repository (code, CI scripts, examples, docs) sets RAY_AUTH_MODE=disabled."""
    offenders = []
    for path in REPO.rglob("*"):
        parts = set(path.relative_to(REPO).parts)
        if not path.is_file() or parts & {".venv", ".git", "__pycache__", "node_modules"} or path == Path(__file__):
            continue
        if (
            path.suffix not in (".py", ".sh", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".md", ".txt", "")
            or path.stat().st_size > 2_000_000
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [
            f"{path.relative_to(REPO)}: {line.strip()}" for line in text.splitlines() if AUTH_OFF.search(line)
        ]
    assert offenders == []


def test_init_ray_passes_nothing_that_disables_authentication(monkeypatch):
    import ray

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **kw: seen.update(kw))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    mode_before = os.environ.get("RAY_AUTH_MODE")
    for address in (None, "ray://head.example:10001"):
        seen.clear()
        orchestrator.runner.init_ray(address)
        assert seen, "init_ray did not call ray.init"
        assert "AUTH_MODE" not in json.dumps(seen.get("_system_config") or {})
        env_vars = (seen.get("runtime_env") or {}).get("env_vars", {})
        assert not any("AUTH" in k for k in env_vars), env_vars
        assert os.environ.get("RAY_AUTH_MODE") == mode_before


def test_local_ray_runs_with_token_authentication(local_ray):
    from ray._private.authentication.authentication_utils import is_token_auth_enabled
    from ray._raylet import AuthenticationTokenLoader

    assert is_token_auth_enabled(), "Ray started without token authentication"
    assert os.environ.get("RAY_AUTH_MODE", "token").lower() == "token"
    assert AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)

    @local_ray.remote(num_cpus=0)
    def worker_auth_mode():
        from ray._private.authentication.authentication_utils import is_token_auth_enabled as enabled

        return enabled()

    assert local_ray.get(worker_auth_mode.remote(), timeout=120) is True


def test_a_short_password_is_masked_in_the_url_not_wherever_its_letters_appear(work):
    """With the password `p`, masking every `p` made `***ostgres://` and `Can't load ***lugin`."""
    code, out, err = call("results", "list", "--db", "postgres://u:p@127.0.0.1:1/x")
    assert_one_line_error(code, err)
    assert "postgresql://u:***@127.0.0.1:1/x" in err and "***ostgres" not in err and ":p@" not in err
    assert mask_text("cannot reach postgresql://u:p@h/x (password=p) at port 1", "postgresql://u:p@h/x") == (
        "cannot reach postgresql://u:***@h/x (password=***) at port 1"
    )
