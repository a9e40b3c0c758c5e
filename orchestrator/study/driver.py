"""The study driver: Optuna's ask/tell over the one dispatcher, one phasebench run per trial."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.config import ConfigError

from .. import interrupts
from ..dispatch import Capacity, Dispatcher
from ..errors import UserError
from ..runner import check_reachable, cluster_auto_device, init_ray
from ..spec import (
    config_hash,
)
from ..store.engine import database_url
from ..store.repository import Store
from ..store.schema import FINISHED
from ..worker import isolation_scheme
from .drivers import DRIVER_ATTR, DriverLease, abandoned
from .spec import (
    BATCH_ATTR,
    GIB,
    MAX_ATTR_CHARS,
    NATIVE_CONSTRAINTS,
    OOM_CONSTRAINT,
    StudySpec,
)
from .storage import close_storage, load_study, open_storage, running_trial, spec_of


@dataclass
class TrialReport:
    """What the driver told Optuna about one trial (passed to `on_trial`)."""

    number: int
    state: str  # COMPLETE | FAIL | PRUNED
    values: list[float] | None
    feasible: bool | None
    run_id: str | None
    reused: bool
    error: str | None


@dataclass
class StudyOutcome:
    name: str
    batch_id: int
    counts: dict[str, int] = field(default_factory=dict)  # this session's trials by state
    total: int = 0  # trials in the study
    stale_failed: int = 0  # RUNNING trials of a driver that died, marked FAIL
    reused: int = 0  # trials answered from the database
    interrupted: bool = False
    cancelled: bool = False  # stopped by `phasebench cancel` of the study's batch


@dataclass
class _Job:
    trial: Any
    run_id: str
    config: dict[str, Any]
    digest: str
    waiters: list[tuple[Any, str]] = field(default_factory=list)  # (trial, its skipped run id)
    reported: set[int] = field(default_factory=set)  # steps whose validation loss went to the pruner


class StudyDriver:
    """Ask/tell over the one dispatcher (:mod:`orchestrator.dispatch`): up to `parallel` trials in flight,
    each one phasebench run. Not thread-safe: one driver per process and study; other processes may drive
    the same study at the same time (:mod:`orchestrator.study.drivers`, `lease`)."""

    def __init__(
        self,
        store: Store,
        storage,
        study,
        spec: StudySpec,
        batch_id: int,
        parallel: int,
        address: str | None,
        max_retries: int,
        on_trial: Callable[[TrialReport], None] | None,
        lease: DriverLease,
    ):
        self.store, self.storage, self.study, self.spec = store, storage, study, spec
        self.batch_id, self.lease = batch_id, lease
        self.cancelled = False
        self.parallel, self.address, self.max_retries = parallel, address, max_retries
        self.on_trial = on_trial or (lambda report: None)
        self.dispatch: Dispatcher[_Job] | None = None
        self.by_hash: dict[str, _Job] = {}  # the job of each config in flight or held
        self.by_run: dict[str, _Job] = {}  # the job of each run in flight
        self.held: _Job | None = None  # asked for, waiting for capacity
        self.counts: dict[str, int] = {}
        self.reused = 0
        self.asked: set[int] = set()  # numbers of the trials this driver asked for
        self.first_number = len(study.get_trials(deepcopy=False))  # trials numbered from here are this driver's

    @property
    def dispatcher(self) -> Dispatcher[_Job]:
        """The dispatcher of :meth:`run`, which every other step runs inside."""
        assert self.dispatch is not None, "the study driver is not running"
        return self.dispatch

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, n_trials: int) -> None:
        init_ray(self.address)
        capacity = Capacity.of_cluster(self.parallel)
        train = self.spec.job == "train"
        with Dispatcher[_Job](self.store, capacity, self.max_retries, train, self._report) as self.dispatch:
            try:
                self._drive(n_trials)
            except KeyboardInterrupt:
                interrupts.delivered()
                self._abandon("interrupted: the study driver was stopped (Ctrl-C)")
                raise

    def _drive(self, n_trials: int) -> None:
        asked = 0
        while True:
            while self.held is None and asked < n_trials and len(self.by_run) < self.parallel:
                asked += 1
                self.held = self._ask()
            if self.held is not None and self.dispatcher.fits(self.held.config):
                job, self.held = self.held, None
                self.dispatcher.submit(job, job.run_id, job.config)
                self.by_run[job.run_id] = job
                continue
            if not self.dispatcher.busy:
                if self.held is None and asked >= n_trials:
                    return
                continue
            for job, _ in self.dispatcher.wait():
                self._finish(job)
            if self.lease.renew() and self.store.cancel_requested(self.batch_id):
                self._abandon("cancelled by `phasebench cancel`")
                self.cancelled = True
                return

    def _ask(self) -> _Job | None:
        """Ask for a trial and decide what to do with it; returns a job to submit, or None when the trial
        was answered at once (invalid config, cached result, same config in flight, impossible)."""
        trial = self.study.ask()
        self.asked.add(trial.number)
        self.lease.tag(trial)
        values = {p.name: p.suggest(trial) for p in self.spec.space}
        try:
            resolved, params = self.spec.resolve(values)
        except ConfigError as exc:
            trial.set_user_attr("invalid_config", str(exc)[:MAX_ATTR_CHARS])
            self._tell(trial, "PRUNED", None, None, None, False, f"invalid config: {exc}")
            return None
        digest = config_hash(resolved)
        trial.set_user_attr("config_hash", digest)
        trial.set_user_attr("model", resolved["model"])
        cached = self.store.finished_run_of(digest)
        if cached is not None:
            run_id = self._add_run(trial, resolved, digest, params, "skipped", cached)
            self.reused += 1
            self._conclude(trial, run_id, self.store.run_summary(cached), reused=True)
            return None
        running = self.by_hash.get(digest)
        if running is not None:
            run_id = self._add_run(trial, resolved, digest, params, "skipped", running.run_id)
            running.waiters.append((trial, run_id))
            return None
        run_id = self._add_run(trial, resolved, digest, params, "pending", None)
        if reason := self.dispatcher.refusal(resolved, params):
            # a config too large for any device is an infeasible trial, as an OOM is; the rest fail
            too_large = reason.field == "model"
            self.dispatcher.fail(run_id, f"not run: {reason}", "oom" if too_large else "failed")
            self._conclude(trial, run_id, self.store.run_summary(run_id), reused=False)
            return None
        job = _Job(trial, run_id, resolved, digest)
        self.by_hash[digest] = job
        return job

    def _forget(self, job: _Job) -> None:
        self.by_run.pop(job.run_id, None)
        self.by_hash.pop(job.digest, None)

    def _finish(self, job: _Job) -> None:
        """The job's run ended and is stored: tell its trial, and the trials that waited on it."""
        self._forget(job)
        result = self.store.run_summary(job.run_id)
        self._conclude(job.trial, job.run_id, result, reused=False)
        for trial, run_id in job.waiters:
            if result["status"] in FINISHED:
                self.reused += 1
                self._conclude(trial, run_id, result, reused=True)
            else:
                error = f"the run it shared ({job.run_id}) ended {result['status']}: {result['error']}"
                self._tell(trial, "FAIL", None, None, run_id, True, error)

    def _report(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Streamed training metrics (already stored): with a pruner, report validation losses and prune."""
        job = self.by_run.get(run_id)
        if self.spec.pruner == "none" or job is None:
            return
        evals = sorted(
            (r["step"], r["val_loss"]) for r in rows if r.get("kind") == "eval" and r.get("val_loss") is not None
        )
        for step, val_loss in evals:
            if step in job.reported:
                continue
            job.reported.add(step)
            job.trial.report(val_loss, step)
            if job.trial.should_prune():
                self._prune(job, step)
                return

    def _prune(self, job: _Job, step: int) -> None:
        message = f"pruned by the {self.spec.pruner} pruner at step {step}"
        self.dispatcher.cancel(job, message)
        self._forget(job)
        self._tell(job.trial, "PRUNED", None, None, job.run_id, False, message)
        for trial, run_id in job.waiters:
            self._tell(trial, "PRUNED", None, None, run_id, True, message)

    def _abandon(self, message: str) -> None:
        """Ctrl-C: forget the runs in flight (they end with the driver), store them as failed and tell their
        trials FAIL."""
        self.dispatcher.abandon()
        self.by_run.clear()
        self.by_hash.clear()
        self.held = None
        self._conclude_stored()
        # in flight, held, waiting on a shared run, or half-asked when the interrupt came: all of this
        # driver's trials that are still RUNNING
        # a Ctrl-C inside study.ask() leaves a RUNNING trial this driver never saw and never tagged: number >=
        # first_number; one tagged by another driver is that driver's (several may run the study)
        mine = self.asked | {
            t.number
            for t in self.study.get_trials(deepcopy=False)
            if t.number >= self.first_number and t.user_attrs.get(DRIVER_ATTR, self.lease.me) == self.lease.me
        }
        failed = _fail_unfinished(self.store, self.storage, self.study, message, numbers=mine)
        if failed:
            self.counts["FAIL"] = self.counts.get("FAIL", 0) + failed

    def _conclude_stored(self) -> None:
        """Tell the trials whose run was stored before the interrupt reached their tell: their result
        counts (a measured run is never thrown away)."""
        from optuna.trial import TrialState

        for frozen in self.study.get_trials(deepcopy=False, states=[TrialState.RUNNING]):
            run_id = frozen.user_attrs.get("run_id")
            if frozen.number not in self.asked or run_id is None or frozen.user_attrs.get("reused_run_id"):
                continue
            if self.store.has_result(run_id):
                trial = running_trial(self.storage, self.study, frozen.number)
                self._conclude(trial, run_id, self.store.run_summary(run_id), reused=False)

    # -- database ---------------------------------------------------------------------------------
    def _add_run(
        self, trial, resolved: dict[str, Any], digest: str, params: int, status: str, reused: str | None
    ) -> str:
        run_id = self.store.add_trial_run(
            self.batch_id, self.spec.name, trial.number, resolved, digest, params, status, reused
        )
        trial.set_user_attr("run_id", run_id)
        if reused:
            trial.set_user_attr("reused_run_id", reused)
        return run_id

    # -- telling Optuna -----------------------------------------------------------------------------
    def _conclude(self, trial, run_id: str, result: dict[str, Any], reused: bool) -> None:
        status = result["status"]
        if status not in ("ok", "oom"):
            self._tell(trial, "FAIL", None, None, run_id, reused, f"{status}: {result['error']}")
            return
        peak = peak_gib(result)
        values = [metric_value(o.metric, result) for o in self.spec.objectives]
        budget = self.spec.vram_budget_gb
        if status == "oom":
            over = peak - budget if (peak is not None and budget) else 0.0
            constraint = max(OOM_CONSTRAINT, over)
            values = [o.worst() if v is None else v for o, v in zip(self.spec.objectives, values, strict=False)]
        else:
            missing = [o.metric for o, v in zip(self.spec.objectives, values, strict=False) if v is None]
            if budget and peak is None:
                missing.append("peak_memory (for the budget)")
            if missing:
                self._tell(trial, "FAIL", None, None, run_id, reused, f"not measured: {', '.join(missing)}")
                return
            constraint = peak - budget if (peak is not None and budget) else 0.0  # budget: peak is measured
        trial.set_user_attr("constraints", [constraint])
        trial.set_user_attr("status", status)
        if status == "oom":
            trial.set_user_attr("error", str(result["error"])[:MAX_ATTR_CHARS])
        if NATIVE_CONSTRAINTS:
            trial.set_constraint("vram", constraint)
        self._tell(trial, "COMPLETE", values, constraint <= 0, run_id, reused, None)

    def _tell(self, trial, state: str, values, feasible, run_id, reused, error, callback: bool = True) -> None:
        from optuna.trial import TrialState

        if error:
            trial.set_user_attr("error", str(error)[:MAX_ATTR_CHARS])
        if values is not None:
            self.study.tell(trial, values)
        else:
            self.study.tell(trial, state=getattr(TrialState, state))
        self.counts[state] = self.counts.get(state, 0) + 1
        if callback:
            self.on_trial(TrialReport(trial.number, state, values, feasible, run_id, reused, error))


def peak_gib(result: dict[str, Any]) -> float | None:
    """The peak memory of a run in GiB: the allocator's peak on CUDA, the process's peak RSS on CPU."""
    value = result.get("peak_bytes") if result.get("device") == "cuda" else result.get("peak_rss_bytes")
    return None if value is None else value / GIB


def metric_value(metric: str, result: dict[str, Any]) -> float | None:
    if metric == "peak_memory":
        return peak_gib(result)
    value = result.get(metric)
    return None if value is None else float(value)


def _fail_unfinished(store, storage, study, message: str, numbers: set[int] | None = None) -> int:
    """FAIL the study's RUNNING trials in `numbers` (this driver's), or without `numbers` those whose driver
    is gone, and store their unfinished runs as failed; returns how many."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=[TrialState.RUNNING])
    if numbers is None:
        leases = study.user_attrs
        stale = [t.number for t in running if abandoned(t, leases)]
    else:
        stale = [t.number for t in running if t.number in numbers]
    failed = [number for number in stale if _fail_trial(storage, study, number, message)]
    store.fail_unfinished_trial_runs(study.study_name, failed, message)
    return len(failed)


def _fail_trial(storage, study, number: int, message: str) -> bool:
    """Tell a RUNNING trial FAIL with its error; False when it finished meanwhile (its result came in, or
    another driver failed it): a trial's end is told once, by whoever comes first."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        running_trial(storage, study, number).set_user_attr("error", message)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    except UpdateFinishedTrialError:
        return False
    return True


def run_study(
    name: str,
    trials: int,
    parallel: int = 1,
    db: str | None = None,
    address: str | None = None,
    max_retries: int = 2,
    on_start: Callable[[int, int], None] | None = None,
    on_trial: Callable[[TrialReport], None] | None = None,
) -> StudyOutcome:
    """Run (or continue) a stored study until it holds `trials` trials, `parallel` at a time.

    `on_start(done, to_run)` is called once the study is loaded; `on_trial(report)` after each told trial.
    A KeyboardInterrupt stops the driver cleanly: the trials in flight are told FAIL and
    `outcome.interrupted` is set; running it again continues.
    """
    if trials < 1 or parallel < 1:
        raise UserError("study run: --trials and --parallel must be >= 1")
    isolation_scheme()  # before any trial is asked for
    if address:
        check_reachable(address)
    url = database_url(db)
    storage = open_storage(url, create=False)
    try:
        store = Store(url, create=False)
    except BaseException:
        close_storage(storage)
        raise
    try:
        probe = load_study(storage, name)
        spec = spec_of(probe)
        batch_id = int(probe.user_attrs[BATCH_ATTR])
        study = load_study(storage, name, spec.make_sampler(len(probe.trials)), spec.make_pruner())
        lease = DriverLease(study)
        lease.renew()
        store.clear_cancel(batch_id)
        try:
            outcome = StudyOutcome(name, batch_id)
            outcome.stale_failed = _fail_unfinished(
                store, storage, study, "the study driver stopped while this trial ran"
            )
            from optuna.trial import TrialState

            # not enqueued ones
            started = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
            todo = max(0, trials - len(started))
            grid = spec.grid_size()
            if grid is not None:
                points = {t.system_attrs.get("grid_id") for t in started}
                todo = min(todo, grid - len(points - {None}))
            if on_start is not None:
                on_start(len(started), todo)
            if todo:
                store.set_batch_status(batch_id, "running")
                driver = StudyDriver(
                    store, storage, study, spec, batch_id, parallel, address, max_retries, on_trial, lease
                )
                try:
                    with cluster_auto_device(address):  # trials resolve `device: auto` by the cluster's nodes
                        driver.run(todo)
                except KeyboardInterrupt:
                    outcome.interrupted = True
                outcome.counts, outcome.reused, outcome.cancelled = driver.counts, driver.reused, driver.cancelled
            status = "interrupted" if outcome.interrupted else "cancelled" if outcome.cancelled else "done"
            store.set_batch_status(batch_id, status)
            outcome.total = len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])
            return outcome
        finally:
            lease.release()
    finally:
        close_storage(storage)
        store.close()
