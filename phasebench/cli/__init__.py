"""`phasebench`: run specs, follow batches, query and curate results, manage the database, build dashboards.

Exit codes: 0 success, 1 a run failed or timed out (results are still stored), 2 bad input, 130 interrupted.
One module per verb group; torch, Ray, Optuna and Plotly load inside the verbs that need them.
"""

from __future__ import annotations

import signal
import sys

import click

from orchestrator import interrupts
from orchestrator.errors import ConfigError, UserError
from orchestrator.store.engine import database_url, mask_text

from .batches import cancel, run, status
from .dashboard import dashboard
from .database import db, env
from .results import results
from .runs import runs
from .study import study


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="phasebench")
def cli() -> None:
    """Orchestrate O(N) language-model experiments on Ray and keep every result in one database."""


for command in (run, status, cancel, results, runs, study, dashboard, db, env):
    cli.add_command(command)


def _terminate(signum, frame) -> None:
    """SIGTERM (`timeout`, `kill`, a scheduler's preemption) stops a driver the way Ctrl-C does: runs in
    flight are marked, trials told FAIL, and the batch or study can be resumed. A second SIGTERM kills."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    interrupts.request()


def _interrupt(signum, frame) -> None:
    """Ctrl-C, recorded so that a raise swallowed by a callback is raised again (orchestrator.interrupts)."""
    interrupts.request()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit 2; nothing prints a password."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _interrupt)
    args = argv if argv is not None else sys.argv[1:]
    url = _db_from_argv(args) or database_url()  # for masking what is printed
    try:
        for arg in args:
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"argument {arg!r} is not valid UTF-8") from None
        cli.main(args=argv, prog_name="phasebench", standalone_mode=False)
    except (ConfigError, UserError) as exc:
        click.echo(f"error: {_one_line(mask_text(str(exc), url))}", err=True)
        sys.exit(2)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help, as asked for
        click.echo(exc.format_message())
    except click.UsageError as exc:
        click.echo(f"error: {_one_line(mask_text(exc.format_message(), url))}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _db_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--db="):
            return arg[5:]
    return None
