"""What the verb groups share: the common options, the spec a verb loads (with `--set`), output helpers."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from orchestrator.errors import UserError
from orchestrator.overrides import parse_settings, with_defaults
from orchestrator.store.engine import mask_url
from orchestrator.store.repository import Store

FORMATS = click.Choice(["table", "json", "csv"])
db_option = click.option("--db", envvar="PHASEBENCH_DB", help="SQLAlchemy URL (default sqlite:///phasebench.db).")
address_option = click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster address (default: local Ray).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
settings_option = click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a field of the spec's defaults, value read as in a spec (repeatable).",
)


imports_option = click.option(
    "--import",
    "imports",
    multiple=True,
    metavar="MODULE",
    help="Import a module, .py file or package folder that registers model families (repeatable).",
)


def spec_source(path: str, settings: tuple[str, ...], imports: tuple[str, ...] = ()) -> str | dict[str, Any]:
    """What a verb validates: the spec file, or its parsed content with `--set` over its defaults and the
    `--import` modules (relative to the working directory) added to its imports."""
    if not settings and not imports:
        return path
    from orchestrator.spec import load_spec_file
    from orchestrator.user_code import with_extra_imports

    data = load_spec_file(path)
    if not isinstance(data, dict):
        return path  # the verb's own validation names what is wrong with it
    if imports:
        data = with_extra_imports(data, list(imports))
    return with_defaults(data, parse_settings(settings)) if settings else data


@contextlib.contextmanager
def open_store(db: str | None) -> Iterator[Store]:
    """The existing result database at `db` (an empty or missing one is a one-line error)."""
    store = Store(db, create=False)
    try:
        yield store
    finally:
        store.close()


def resolve_runs(store: Store, refs: tuple[str, ...]) -> list[str]:
    """Full run ids of `refs` (ids or unique prefixes), without repeats; an unknown one is a UserError."""
    return list(dict.fromkeys(store.resolve_run(ref) for ref in refs))


def command_line(*words: Any, **options: Any) -> str:
    """A `phasebench` command line with every option that was given (None: left out), quoted for a shell;
    a database password is masked."""
    parts = ["phasebench", *map(str, words)]
    for name, value in options.items():
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", mask_url(value) if name == "db" else str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def emit(text: str, out: str | None, make_folder: bool = False) -> None:
    """`text` to the file `out` (its folder created when `make_folder`; a UserError naming --out when it
    cannot be written), else to stdout."""
    if not out:
        click.echo(text)
        return
    try:
        if make_folder:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--out: cannot write {out}: {exc.strerror}") from None


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
