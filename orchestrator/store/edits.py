"""What a user changes on stored runs: tags, notes, and deleting runs with everything that points at them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from ..errors import UserError
from .repository import Store, retried
from .schema import Result, Run, RunTag, TrainMetric

TAG_PATTERN = re.compile(r"[\w.:+/-]{1,100}")
MAX_NOTE_CHARS = 2000


def checked_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """`tags` without repeats; a UserError names one that is not 1 to 100 letters, digits or `_ . : + / -`."""
    for tag in tags:
        if not TAG_PATTERN.fullmatch(tag):
            raise UserError(f"tag: {tag!r} is not 1 to 100 letters, digits or _ . : + / -")
    return tuple(dict.fromkeys(tags))


@retried
def tag_runs(store: Store, run_ids: Iterable[str], tags: Iterable[str]) -> int:
    """Give every run each of `tags` (a tag a run already has is kept once); returns the tags added."""
    run_ids, tags = list(run_ids), checked_tags(tags)
    with store.session() as s, s.begin():
        have = set(s.execute(select(RunTag.run_id, RunTag.tag).where(RunTag.run_id.in_(run_ids))).all())
        added = [RunTag(run_id=r, tag=t) for r in run_ids for t in tags if (r, t) not in have]
        s.add_all(added)
    return len(added)


def tag_batch(store: Store, batch_id: int, tags: Iterable[str]) -> int:
    """Give every run of a stored batch each of `tags`; returns the tags added."""
    tags = checked_tags(tags)
    if not tags:
        return 0
    with store.session() as s:
        run_ids = s.scalars(select(Run.id).where(Run.batch_id == batch_id)).all()
    return tag_runs(store, run_ids, tags)


@retried
def untag_runs(store: Store, run_ids: Iterable[str], tag: str) -> int:
    """Take `tag` off the runs; returns from how many it was taken."""
    with store.session() as s, s.begin():
        # a DELETE's result is a CursorResult (which has rowcount); Session.execute is typed as returning a Result
        done = cast(
            "CursorResult[Any]", s.execute(delete(RunTag).where(RunTag.run_id.in_(list(run_ids)), RunTag.tag == tag))
        )
        return done.rowcount


@retried
def set_note(store: Store, run_id: str, text: str) -> None:
    """The run's note (one per run); an empty text removes it."""
    if len(text) > MAX_NOTE_CHARS or "\x00" in text:
        raise UserError(f"note: at most {MAX_NOTE_CHARS} characters and no NUL (got {len(text)} characters)")
    with store.session() as s, s.begin():
        run = s.get(Run, run_id)
        assert run is not None, f"no run {run_id}"
        run.note = text or None


@dataclass(frozen=True)
class Deletion:
    """What deleting runs removes: the runs asked for, the runs that reuse one of their results (status
    skipped, transitively), and with them their results, training metrics and tags. `trials` are the
    (study, trial number) pairs whose run is removed: the Optuna trials stay, their run link dangles.
    A running run is not deleted (a UserError)."""

    run_ids: tuple[str, ...]
    reusing: tuple[str, ...]
    metrics: int
    trials: tuple[tuple[str, int], ...]

    @property
    def removed(self) -> tuple[str, ...]:
        return self.run_ids + self.reusing


def plan_deletion(store: Store, run_ids: Iterable[str]) -> Deletion:
    """What :func:`delete_runs` would remove now; writes nothing."""
    with store.session() as s:
        return _deletion(s, list(dict.fromkeys(run_ids)))


@retried
def delete_runs(store: Store, run_ids: Iterable[str]) -> Deletion:
    """Delete the runs and everything that points at them (:class:`Deletion`) in one transaction."""
    with store.session() as s, s.begin():
        deletion = _deletion(s, list(dict.fromkeys(run_ids)))
        for table in (RunTag, TrainMetric, Result):
            s.execute(delete(table).where(table.run_id.in_(deletion.removed)))
        s.execute(delete(Run).where(Run.id.in_(deletion.removed)))
    return deletion


def _deletion(s: Session, run_ids: list[str]) -> Deletion:
    doomed: list[str] = list(run_ids)
    reusing: Sequence[str] = list(run_ids)
    while reusing:  # a run that reuses a doomed run's result would point at nothing
        reusing = s.scalars(select(Run.id).where(Run.reused_run_id.in_(reusing), Run.id.not_in(doomed))).all()
        doomed += reusing
    running = s.scalars(select(Run.id).where(Run.id.in_(doomed), Run.status == "running")).first()
    if running:  # its driver would write a result for a run that is gone
        raise UserError(f"run: {running[:10]} is running; let its batch finish or stop it first")
    metrics = s.scalar(select(func.count()).select_from(TrainMetric).where(TrainMetric.run_id.in_(doomed)))
    assert metrics is not None  # COUNT(*) always returns a row
    trials = s.execute(
        select(Run.study_name, Run.trial_number)
        .where(Run.id.in_(doomed), Run.study_name.is_not(None))
        .order_by(Run.study_name, Run.trial_number)
    ).all()
    # rows of runs with a study: study_name is not NULL, and a study's run always has its trial_number
    pairs = cast("tuple[tuple[str, int], ...]", tuple(map(tuple, trials)))
    return Deletion(tuple(run_ids), tuple(doomed[len(run_ids) :]), metrics, pairs)
