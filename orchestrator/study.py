"""Optuna studies: a search space over run fields and model knobs, run trial by trial on Ray.

A study spec (YAML) has `name`, optional `description`, `defaults` (fixed run fields and model knobs),
`space` (per parameter `{choices: [...]}` or `{low, high, step?, log?}`), `objectives` (one or more of
`maximize|minimize params|tokens_per_s|peak_memory|val_loss`), optional `constraints`
(`vram_budget_gb`), `sampler` (tpe | nsga2 | gp | grid | random, with `seed`) and `pruner`
(none | median: training studies that minimise `val_loss`).

The driver asks Optuna for trials and runs each as an isolated Ray task (the runner's task, options and
capacity rules), with up to K in flight. Every trial that resolves to a valid config is a phasebench run
in a batch named after the study (`study_name`, `trial_number` set) whose result the store records as
for any batch. A config whose hash already has a finished result (`ok`, `oom`, `nonfinite`) is answered
from the database, not rerun. Worker death and errors tell FAIL; a sampled config that does not validate
tells PRUNED with the reason in the trial's user attrs; OOM and over-budget trials are COMPLETE but
infeasible: the constraint (measured peak GiB - budget, at least 1 for an OOM) is stored in the trial's
user attr `constraints` and given to the sampler (`Trial.set_constraint` on Optuna >= 5, the sampler's
`constraints_func` on Optuna 4); an OOM's unmeasured objective values are told as the worst possible
(+-inf). On CUDA the budget also caps the worker (`vram_budget_gb` in the config: the allocator's
per-process fraction), so an over-budget model OOMs as it would on a smaller card. Optuna's storage is
an RDBStorage on the same URL as the results (its own tables and `alembic_version`; phasebench's are `pb_*` and
`pb_alembic_version`). A study continues where it stopped: trials left RUNNING by a driver that died
are marked FAIL, and every trial counts toward `--trials` (one driver runs a study at a time). With
`pruner: median`, the validation losses a training run streams are reported to Optuna as they arrive
and a run the pruner stops is cancelled (its run stored as `failed`, "pruned ...", its trial PRUNED).

Objective units: params (count), tokens_per_s, peak_memory in GiB (the allocator's peak on CUDA, the
worker's peak RSS on CPU), val_loss (the last evaluation of a `job: train` run, nats per token).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import models
from models.config import ConfigError, check_value

from . import interrupts
from .environment import git_state
from .errors import UserError
from .runner import (
    Capacity,
    check_reachable,
    collect_outcome,
    drain_metrics,
    init_ray,
    metrics_queue,
    remote_executes,
    task_options,
)
from .spec import (
    RUN_FIELD_META,
    RUN_FIELD_TYPES,
    TRAIN_FIELD_META,
    TRAIN_FIELD_TYPES,
    TYPE_NAMES,
    as_mapping,
    check_name_and_description,
    config_hash,
    load_yaml,
    resolve_config,
)
from .store.engine import database_url, mask_url
from .store.repository import Store
from .store.schema import FINISHED, Batch, Result, Run

STUDY_KEYS = ("name", "description", "defaults", "space", "objectives", "constraints", "sampler", "pruner")
METRICS = ("params", "tokens_per_s", "peak_memory", "val_loss")
DIRECTIONS = ("maximize", "minimize")
SAMPLER_OPTIONS = {
    "tpe": ("seed", "n_startup_trials"),
    "nsga2": ("seed", "population_size"),
    "gp": ("seed", "n_startup_trials"),
    "grid": ("seed",),
    "random": ("seed",),
}
PRUNER_OPTIONS = {"none": (), "median": ("n_startup_trials", "n_warmup_steps")}
CONSTRAINT_KEYS = ("vram_budget_gb",)
#: fields a study fixes in `defaults` (objectives and the task's placement depend on them)
NOT_SEARCHABLE = ("job", "device", "num_gpus", "num_cpus", "vram_budget_gb")
MAX_GRID = 10_000
PROBES = 8
SPEC_ATTR = "phasebench:spec"
BATCH_ATTR = "phasebench:batch_id"
GIB = 2**30
#: an OOM is infeasible by at least this much (GiB over budget), even where no peak was measured
OOM_CONSTRAINT = 1.0
MAX_ATTR_CHARS = 1000


# ------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class Param:
    """One searched parameter: categorical `choices`, or an int / float range."""

    name: str
    kind: str  # categorical | int | float
    choices: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Any] | None:
        """Every value of the parameter, or None for a continuous range."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(self.low, self.high + 1, self.step or 1))
        if self.step is None:
            return None
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self.low + i * self.step for i in range(count)]

    def random_value(self, rng: random.Random) -> Any:
        values = self.grid_values()
        if values is not None and len(values) <= 100_000:
            return rng.choice(values)
        if self.kind == "int":
            return rng.randint(self.low, self.high)
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class Objective:
    direction: str
    metric: str

    @property
    def label(self) -> str:
        return f"{self.direction} {self.metric}"

    def worst(self) -> float:
        return -math.inf if self.direction == "maximize" else math.inf


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str
    defaults: dict[str, Any]
    space: tuple[Param, ...]
    objectives: tuple[Objective, ...]
    vram_budget_gb: float | None
    sampler: str
    sampler_options: dict[str, int]
    pruner: str
    pruner_options: dict[str, int]
    source: dict[str, Any]

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def job(self) -> str:
        return self.defaults.get("job", "benchmark")

    def raw_config(self, values: dict[str, Any]) -> dict[str, Any]:
        """The unresolved config of one point of the space (defaults + the point + the budget on CUDA)."""
        return dict(self.defaults) | values

    def resolve(self, values: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Resolve a point; on CUDA the VRAM budget caps the worker (set_per_process_memory_fraction)."""
        resolved, params = resolve_config(self.raw_config(values))
        if self.vram_budget_gb and resolved["device"] == "cuda" and "vram_budget_gb" not in self.defaults:
            resolved, params = resolve_config(self.raw_config(values) | {"vram_budget_gb": self.vram_budget_gb})
        return resolved, params

    def model_of(self, params: dict[str, Any]) -> str:
        return params.get("model", self.defaults.get("model"))

    def make_sampler(self, offset: int = 0):
        """The configured sampler, seeded with `seed + offset` (offset: trials already in the study, so a
        continued study does not replay the random draws of its first session)."""
        import optuna

        opts = dict(self.sampler_options)
        seed = opts.pop("seed", 0) + offset
        constraints = {} if NATIVE_CONSTRAINTS else {"constraints_func": trial_constraints}
        if self.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **opts, **constraints)
        if self.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **opts, **constraints)
        if self.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed, **opts, **constraints)
        if self.sampler == "grid":
            return _GridSampler({p.name: p.grid_values() for p in self.space}, seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)

    def make_pruner(self):
        import optuna

        if self.pruner == "median":
            return optuna.pruners.MedianPruner(**self.pruner_options)
        return optuna.pruners.NopPruner()

    def grid_size(self) -> int | None:
        if self.sampler != "grid":
            return None
        return math.prod(len(p.grid_values()) for p in self.space)


def _grid_sampler_class():
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        """GridSampler whose after_trial does not call `study.stop()` (which raises outside `optimize`);
        the driver stops asking itself once every grid point has been started."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return AskTellGridSampler


def _GridSampler(search_space, seed):  # noqa: N802  (a class factory: optuna is imported lazily)
    return _grid_sampler_class()(search_space, seed=seed)


def _native_constraints() -> bool:
    from optuna.trial import Trial

    return hasattr(Trial, "set_constraint")


#: Optuna >= 5 takes constraints per trial (`Trial.set_constraint`; `constraints_func` is deprecated
#: there); Optuna 4 takes them through the sampler's `constraints_func`, fed from the trial's user attrs
NATIVE_CONSTRAINTS = _native_constraints()


def trial_constraints(trial) -> list[float]:
    """Optuna 4's `constraints_func`: the constraint the driver stored in the trial's user attrs."""
    return list(trial.user_attrs.get("constraints", [0.0]))


def _fields_of(key: str, model_names: list[str]) -> list[tuple[type | None, dict]]:
    """(type, metadata) of a config field for validation; empty when no field of that name exists."""
    if key in RUN_FIELD_TYPES:
        return [(TYPE_NAMES[RUN_FIELD_TYPES[key]], RUN_FIELD_META[key])]
    if key in TRAIN_FIELD_TYPES:
        return [(TYPE_NAMES[TRAIN_FIELD_TYPES[key]], TRAIN_FIELD_META[key])]
    found = []
    for name in model_names:
        for f in dataclasses.fields(models.get(name).config_cls):
            if f.name == key:
                found.append(
                    (
                        TYPE_NAMES.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")),
                        dict(f.metadata),
                    )
                )
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_param(key: str, raw: Any, model_names: list[str]) -> Param:
    where = f"space.{key}"
    if key in NOT_SEARCHABLE:
        raise ConfigError(where, raw, "is fixed per study: set it in defaults")
    kinds = _fields_of(key, model_names)
    if not kinds:
        raise ConfigError(where, raw, f"is not a run field or a knob of {', '.join(model_names)}")
    if isinstance(raw, list):
        raw = {"choices": raw}
    if not isinstance(raw, dict):
        raise ConfigError(where, raw, "must be {choices: [...]} or {low, high, step?, log?}")
    if "choices" in raw:
        extra = set(raw) - {"choices"}
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}", raw[sorted(extra)[0]], "cannot be combined with choices")
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices", choices, "must be a non-empty list")
        for value in choices:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ConfigError(f"{where}.choices", value, "values must be numbers, strings or booleans")
            _check_field_value(where, key, value, kinds)
        if len({repr(v) for v in choices}) != len(choices):
            raise ConfigError(f"{where}.choices", choices, "has a value twice")
        return Param(key, "categorical", tuple(choices))
    for part in raw:
        if part not in ("low", "high", "step", "log"):
            raise ConfigError(f"{where}.{part}", raw[part], "unknown key; expected choices or low, high, step, log")
    for part in ("low", "high"):
        if part not in raw:
            raise ConfigError(f"{where}.{part}", None, "is required for a range")
        if not _is_number(raw[part]):
            raise ConfigError(f"{where}.{part}", raw[part], "must be a number")
    low, high, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log", log, "must be true or false")
    if step is not None and (not _is_number(step) or step <= 0):
        raise ConfigError(f"{where}.step", step, "must be a number > 0")
    if not math.isfinite(low) or not math.isfinite(high) or low > high:
        raise ConfigError(where, f"[{low}, {high}]", "needs finite low <= high")
    if log and low <= 0:
        raise ConfigError(f"{where}.low", low, "must be > 0 for a log range")
    field_types = {t for t, _ in kinds}
    integral = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    if int in field_types:
        if not integral:
            raise ConfigError(where, raw, "is an integer field: low, high and step must be integers")
        kind = "int"
        if log and step not in (None, 1):
            raise ConfigError(f"{where}.step", step, "must be 1 for a log range of integers")
    elif float in field_types:
        kind = "float"
        low, high, step = float(low), float(high), (float(step) if step is not None else None)
        if log and step is not None:
            raise ConfigError(f"{where}.step", step, "cannot be combined with log for a float range")
    else:
        raise ConfigError(where, raw, "is not a numeric field: use choices")
    for value in (low, high):
        _check_field_value(where, key, value, kinds)
    return Param(key, kind, (), low, high, step, log)


def _check_field_value(where: str, key: str, value: Any, kinds: list[tuple[type | None, dict]]) -> None:
    for kind, meta in kinds:
        if kind is None:
            continue
        try:
            check_value(key, value, kind, meta)
        except ConfigError as exc:
            raise ConfigError(where, value, exc.message) from None


def _parse_objectives(raw: Any, job: str) -> tuple[Objective, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if raw is None or not items:
        raise ConfigError("objectives", raw, f"is required: a list like [maximize params] ({', '.join(METRICS)})")
    out, seen = [], set()
    for i, item in enumerate(items):
        where = f"objectives[{i}]"
        parts = item.split() if isinstance(item, str) else None
        if not parts or len(parts) != 2 or parts[0] not in DIRECTIONS:
            raise ConfigError(where, item, "must be '<maximize|minimize> <metric>'")
        if parts[1] not in METRICS:
            raise ConfigError(where, item, f"unknown metric; expected one of {', '.join(METRICS)}")
        if parts[1] in seen:
            raise ConfigError(where, item, "names a metric twice")
        if parts[1] == "val_loss" and job != "train":
            raise ConfigError(where, item, "val_loss needs job: train in defaults")
        seen.add(parts[1])
        out.append(Objective(parts[0], parts[1]))
    return tuple(out)


def _parse_choice(raw: Any, where: str, options: dict[str, tuple[str, ...]], default: str) -> tuple[str, dict]:
    if raw is None:
        return default, {}
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        raise ConfigError(where, raw, f"must be a name ({', '.join(options)}) or a mapping with type")
    kind = raw.get("type", default)
    if kind not in options:
        raise ConfigError(f"{where}.type", kind, f"must be one of {', '.join(options)}")
    opts = {}
    for key, value in raw.items():
        if key == "type":
            continue
        if key not in options[kind]:
            raise ConfigError(
                f"{where}.{key}",
                value,
                f"is not an option of {kind}{' (' + ', '.join(options[kind]) + ')' if options[kind] else ''}",
            )
        low = 0 if key in ("seed", "n_startup_trials", "n_warmup_steps") else 2
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 2**31 - 1:
            raise ConfigError(f"{where}.{key}", value, f"must be an integer >= {low}")
        opts[key] = value
    return kind, opts


def parse_study_spec(data: dict[str, Any]) -> StudySpec:
    """Validate a parsed study spec completely (no side effects); ConfigError names the field."""
    if not isinstance(data, dict):
        raise ConfigError("spec", data, "must be a mapping")
    for key in data:
        if key not in STUDY_KEYS:
            raise ConfigError(str(key), data[key], f"unknown study key; expected one of {', '.join(STUDY_KEYS)}")
    name, description = check_name_and_description(data, "study")
    defaults = dict(as_mapping(data.get("defaults"), "defaults"))
    space_raw = as_mapping(data.get("space"), "space")
    if not space_raw:
        raise ConfigError("space", data.get("space"), "must name at least one parameter to search")
    for key in space_raw:
        if key in defaults:
            raise ConfigError(f"space.{key}", space_raw[key], "is also fixed in defaults")
    if "job" in defaults:
        check_value("job", defaults["job"], str, RUN_FIELD_META["job"])
    if "model" in space_raw:
        model_param = _parse_param("model", space_raw["model"], [])
        if model_param.kind != "categorical":
            raise ConfigError("space.model", space_raw["model"], "must be {choices: [...]}")
        for value in model_param.choices:
            try:
                models.get(value)
            except ConfigError as exc:
                raise ConfigError("space.model", value, exc.message) from None
        model_names = list(model_param.choices)
    elif "model" in defaults:
        models.get(defaults["model"])
        model_names = [defaults["model"]]
    else:
        raise ConfigError("model", None, "is required (in defaults or space)")
    space = tuple(
        model_param if key == "model" else _parse_param(key, raw, model_names) for key, raw in space_raw.items()
    )
    objectives = _parse_objectives(data.get("objectives"), defaults.get("job", "benchmark"))
    constraints = as_mapping(data.get("constraints"), "constraints")
    budget = None
    for key, value in constraints.items():
        if key not in CONSTRAINT_KEYS:
            raise ConfigError(f"constraints.{key}", value, f"unknown constraint; expected {', '.join(CONSTRAINT_KEYS)}")
        if not _is_number(value) or not 0 < value < 1e6:
            raise ConfigError(f"constraints.{key}", value, "must be a number of GiB > 0")
        budget = float(value)
    if budget is not None and "vram_budget_gb" in defaults and defaults["vram_budget_gb"] != budget:
        raise ConfigError(
            "defaults.vram_budget_gb", defaults["vram_budget_gb"], f"differs from constraints.vram_budget_gb={budget:g}"
        )
    sampler, sampler_options = _parse_choice(data.get("sampler"), "sampler", SAMPLER_OPTIONS, "tpe")
    pruner, pruner_options = _parse_choice(data.get("pruner"), "pruner", PRUNER_OPTIONS, "none")
    spec = StudySpec(
        name.strip(),
        description,
        defaults,
        space,
        objectives,
        budget,
        sampler,
        sampler_options,
        pruner,
        pruner_options,
        data,
    )
    _check_sampler(spec)
    if pruner == "median" and [o.label for o in objectives] != ["minimize val_loss"]:
        raise ConfigError("pruner", "median", "prunes on validation loss: needs the single objective minimize val_loss")
    _probe(spec)
    return spec


def _check_sampler(spec: StudySpec) -> None:
    if spec.sampler == "grid":
        size = 1
        for p in spec.space:
            values = p.grid_values()
            if values is None:
                raise ConfigError(
                    f"space.{p.name}", f"[{p.low}, {p.high}]", "sampler grid needs choices or a range with step"
                )
            size *= len(values)
            if size > MAX_GRID:
                raise ConfigError("sampler", "grid", f"the space has more than {MAX_GRID:,} grid points")
    if spec.sampler == "gp":
        try:
            import scipy  # noqa: F401  (Optuna's GPSampler needs scipy and torch)
        except ImportError:
            raise ConfigError("sampler.type", "gp", "needs scipy, which is not installed") from None


def _probe(spec: StudySpec) -> None:
    """Resolve a few points of the space (its corners and random points): the defaults are bad when none
    resolves. Points that fail only in combination are told to Optuna as PRUNED when sampled."""
    rng = random.Random(0)
    points = [
        {p.name: (p.choices[0] if p.kind == "categorical" else p.low) for p in spec.space},
        {p.name: (p.choices[-1] if p.kind == "categorical" else p.high) for p in spec.space},
    ]
    points += [{p.name: p.random_value(rng) for p in spec.space} for _ in range(PROBES - 2)]
    first = None
    for point in points:
        try:
            spec.resolve(point)
            return
        except ConfigError as exc:
            first = first or (exc, point)
    exc, point = first
    where = ", ".join(f"{k}={v}" for k, v in point.items())
    raise ConfigError(exc.field, exc.value, f"{exc.message} [no sampled point resolves, e.g. {where}]")


def load_study_spec(path: str | Path) -> StudySpec:
    return parse_study_spec(load_yaml(path))


# ---------------------------------------------------------------------------------------- storage
def _storage(url: str, create: bool):
    """Optuna's RDBStorage on the results URL; with create=False, UserError when it has no Optuna tables
    (so that reading a study from the wrong database writes nothing)."""
    import optuna
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from .store.engine import SQLITE_BUSY_TIMEOUT_S, make_engine

    if not create:
        parsed = make_url(url)
        if (
            parsed.get_backend_name() == "sqlite"
            and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).exists()
        ):
            raise UserError(f"study: {mask_url(url)} does not exist; create a study with `phasebench study create`")
        engine = make_engine(url)
        try:
            has = inspect(engine).has_table("studies")
        finally:
            engine.dispose()
        if not has:
            raise UserError(
                f"study: {mask_url(url)} holds no Optuna studies; create one with `phasebench study create`"
            )
    kwargs = (
        {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    )
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def _close_storage(storage) -> None:
    storage.remove_session()
    storage.engine.dispose()


def _load(storage, name: str, sampler=None, pruner=None):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise UserError(f"study: no study named {name!r}") from None


def _spec_of(study) -> StudySpec:
    source = study.user_attrs.get(SPEC_ATTR)
    if source is None:
        raise UserError(f"study: {study.study_name!r} was not created by phasebench (no {SPEC_ATTR} attribute)")
    return parse_study_spec(source)


def create_study(spec: str | Path | dict[str, Any], db: str | None = None) -> StudySpec:
    """Validate a study spec, then store the Optuna study and its phasebench batch."""
    import optuna

    parsed = parse_study_spec(spec) if isinstance(spec, dict) else load_study_spec(spec)
    url = database_url(db)
    store = Store(url)
    storage = _storage(url, create=True)
    try:
        if parsed.name in {s.study_name for s in storage.get_all_studies()}:
            raise UserError(
                f"study: {parsed.name!r} already exists; continue it with `phasebench study run {parsed.name}`"
            )
        try:
            study = optuna.create_study(storage=storage, study_name=parsed.name, directions=parsed.directions)
        except optuna.exceptions.DuplicatedStudyError:
            raise UserError(f"study: {parsed.name!r} already exists") from None
        with store.session() as s, s.begin():
            batch = Batch(
                name=parsed.name,
                description=parsed.description or f"Optuna study {parsed.name}",
                spec=parsed.source,
                status="pending",
            )
            s.add(batch)
            s.flush()
            batch_id = batch.id
        study.set_user_attr(SPEC_ATTR, parsed.source)
        study.set_user_attr(BATCH_ATTR, batch_id)
        study.set_user_attr("objectives", [o.label for o in parsed.objectives])
        return parsed
    finally:
        _close_storage(storage)
        store.close()


# ----------------------------------------------------------------------------------------- driver
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


@dataclass
class _Job:
    trial: Any
    run_id: str
    config: dict[str, Any]
    digest: str
    started: float
    waiters: list[tuple[Any, str]] = field(default_factory=list)  # (trial, its skipped run id)
    reported: set[int] = field(default_factory=set)  # steps whose validation loss went to the pruner


class StudyDriver:
    """Ask/tell over Ray: up to `parallel` trials in flight, each one phasebench run."""

    def __init__(
        self,
        store,
        study,
        spec: StudySpec,
        batch_id: int,
        parallel: int,
        address: str | None,
        max_retries: int,
        on_trial: Callable[[TrialReport], None] | None,
    ):
        self.store, self.study, self.spec, self.batch_id = store, study, spec, batch_id
        self.parallel, self.address, self.max_retries = parallel, address, max_retries
        self.on_trial = on_trial or (lambda report: None)
        self.in_flight: dict[Any, _Job] = {}
        self.by_hash: dict[str, _Job] = {}
        self.by_run: dict[str, tuple[Any, _Job]] = {}
        self.held: _Job | None = None
        self.metrics = None
        self.counts: dict[str, int] = {}
        self.reused = 0
        self.remotes: dict[bool, Any] | None = None
        self.asked: set[int] = set()  # numbers of the trials this driver asked for
        self.first_number = len(study.get_trials(deepcopy=False))  # trials numbered from here are this driver's

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, n_trials: int) -> None:
        import ray

        init_ray(self.address)
        git = git_state()
        capacity = Capacity.of_cluster(self.parallel)
        if self.spec.job == "train":
            self.metrics = metrics_queue()
        asked = 0
        interrupts.delivered()  # a stop handled before this drive is not this drive's
        try:
            while True:
                while self.held is None and asked < n_trials and len(self.in_flight) < self.parallel:
                    asked += 1
                    self.held = self._ask(capacity)
                if self.held is not None and capacity.fits(self.held.config):
                    job, self.held = self.held, None
                    ref = self._submit(job, git)
                    self.store.mark_running(job.run_id)
                    capacity.take(job.config)
                    job.started = time.monotonic()
                    self.in_flight[ref] = job
                    self.by_run[job.run_id] = (ref, job)
                    continue
                if not self.in_flight:
                    if self.held is None and asked >= n_trials:
                        break
                    continue
                ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=0.25)
                interrupts.check()  # a Ctrl-C a callback swallowed
                self._drain(capacity)
                for ref in ready:
                    if ref not in self.in_flight:  # pruned while draining
                        continue
                    job = self._pop(ref, capacity)
                    self._finish(job, collect_outcome(ref))
                self._expire(capacity)
        except KeyboardInterrupt:
            interrupts.delivered()
            self._abandon("interrupted: the study driver was stopped (Ctrl-C)")
            raise
        finally:
            if self.metrics is not None:
                try:
                    self._drain(None)  # store what is left; no pruning decisions any more
                finally:
                    self.metrics.shutdown()
                    self.metrics = None

    def _submit(self, job: _Job, git: dict[str, Any]):
        """One Ray task for the job: the runner's task function (isolated unless `isolate: false`) and
        task options."""
        if self.remotes is None:
            self.remotes = remote_executes()
        execute = self.remotes[job.config.get("isolate", True)]
        return execute.options(**task_options(job.config, self.max_retries)).remote(
            job.config, git, job.run_id, self.metrics
        )

    def _ask(self, capacity) -> _Job | None:
        """Ask for a trial and decide what to do with it; returns a job to submit, or None when the trial
        was answered at once (invalid config, cached result, same config in flight, impossible)."""
        trial = self.study.ask()
        self.asked.add(trial.number)
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
        cached = self._cached(digest)
        if cached is not None:
            run_id = self._add_run(trial, resolved, digest, params, "skipped", cached)
            self.reused += 1
            self._conclude(trial, run_id, self._result(cached), reused=True)
            return None
        running = self.by_hash.get(digest) or (self.held if self.held and self.held.digest == digest else None)
        if running is not None:
            run_id = self._add_run(trial, resolved, digest, params, "skipped", running.run_id)
            running.waiters.append((trial, run_id))
            return None
        run_id = self._add_run(trial, resolved, digest, params, "pending", None)
        reason = capacity.impossible(resolved)
        if reason:
            self.store.record_result(run_id, {"status": "failed", "phase": None, "error": reason})
            self._conclude(trial, run_id, self._result(run_id), reused=False)
            return None
        job = _Job(trial, run_id, resolved, digest, time.monotonic())
        self.by_hash[digest] = job
        return job

    def _pop(self, ref, capacity) -> _Job:
        job = self.in_flight.pop(ref)
        capacity.take(job.config, -1)
        self.by_run.pop(job.run_id, None)
        self.by_hash.pop(job.digest, None)
        return job

    def _finish(self, job: _Job, outcome: dict[str, Any]) -> None:
        self._drain(None)  # a worker puts its metrics before it returns
        self.store.record_result(job.run_id, outcome)
        result = self._result(job.run_id)
        self._conclude(job.trial, job.run_id, result, reused=False)
        for trial, run_id in job.waiters:
            if result["status"] in FINISHED:
                self.reused += 1
                self._conclude(trial, run_id, result, reused=True)
            else:
                self._tell(
                    trial,
                    "FAIL",
                    None,
                    None,
                    run_id,
                    True,
                    f"the run it shared ({job.run_id}) ended {result['status']}: {result['error']}",
                )

    def _expire(self, capacity) -> None:
        import ray

        now = time.monotonic()
        for ref, job in list(self.in_flight.items()):
            limit = float(job.config["timeout_s"])
            if now - job.started > limit:
                ray.cancel(ref, force=True)
                self._pop(ref, capacity)
                self._finish(job, {"status": "timeout", "phase": None, "error": f"exceeded timeout_s={limit:g}"})

    def _drain(self, capacity) -> None:
        """Store streamed training metrics; with a pruner, report validation losses and prune."""
        if self.metrics is None:
            return
        for run_id, rows in drain_metrics(self.metrics).items():
            self.store.record_metrics(run_id, rows)
            if self.spec.pruner == "none" or capacity is None or run_id not in self.by_run:
                continue
            ref, job = self.by_run[run_id]
            evals = sorted(
                (r["step"], r["val_loss"]) for r in rows if r.get("kind") == "eval" and r.get("val_loss") is not None
            )
            for step, val_loss in evals:
                if step in job.reported:
                    continue
                job.reported.add(step)
                job.trial.report(val_loss, step)
                if job.trial.should_prune():
                    self._prune(ref, job, step, capacity)
                    break

    def _prune(self, ref, job: _Job, step: int, capacity) -> None:
        import ray

        ray.cancel(ref, force=True)
        self._pop(ref, capacity)
        message = f"pruned by the {self.spec.pruner} pruner at step {step}"
        self.store.record_result(job.run_id, {"status": "failed", "phase": None, "error": message})
        self._tell(job.trial, "PRUNED", None, None, job.run_id, False, message)
        for trial, run_id in job.waiters:
            self._tell(trial, "PRUNED", None, None, run_id, True, message)

    def _abandon(self, message: str) -> None:
        """Ctrl-C: cancel the runs in flight, store them as failed and tell their trials FAIL."""
        import ray

        for ref in list(self.in_flight):
            ray.cancel(ref, force=True)
        self.in_flight.clear()
        self.by_run.clear()
        self.by_hash.clear()
        self.held = None
        self._conclude_stored()
        # in flight, held, waiting on a shared run, or half-asked when the interrupt came: all of this
        # driver's trials that are still RUNNING
        # a Ctrl-C inside study.ask() leaves a RUNNING trial this driver never saw: number >= first_number
        mine = self.asked | {t.number for t in self.study.get_trials(deepcopy=False) if t.number >= self.first_number}
        failed = _fail_unfinished(self.store, self.study, self.spec, message, numbers=mine)
        if failed:
            self.counts["FAIL"] = self.counts.get("FAIL", 0) + failed

    def _conclude_stored(self) -> None:
        """Tell the trials whose run was stored before the interrupt reached their tell: their result
        counts (a measured run is never thrown away)."""
        from optuna.trial import Trial, TrialState

        for frozen in self.study.get_trials(deepcopy=False, states=[TrialState.RUNNING]):
            run_id = frozen.user_attrs.get("run_id")
            if frozen.number not in self.asked or run_id is None or frozen.user_attrs.get("reused_run_id"):
                continue
            with self.store.session() as s:
                stored = s.get(Result, run_id) is not None
            if stored:
                self._conclude(Trial(self.study, frozen._trial_id), run_id, self._result(run_id), reused=False)

    # -- database ---------------------------------------------------------------------------------
    def _add_run(
        self, trial, resolved: dict[str, Any], digest: str, params: int, status: str, reused: str | None
    ) -> str:
        run_id = uuid.uuid4().hex
        with self.store.session() as s, s.begin():
            s.add(
                Run(
                    id=run_id,
                    batch_id=self.batch_id,
                    index=trial.number,
                    config_hash=digest,
                    config=resolved,
                    model=resolved["model"],
                    mode=resolved["mode"],
                    device=resolved["device"],
                    params=params,
                    status=status,
                    reused_run_id=reused,
                    study_name=self.spec.name,
                    trial_number=trial.number,
                )
            )
        trial.set_user_attr("run_id", run_id)
        if reused:
            trial.set_user_attr("reused_run_id", reused)
        return run_id

    def _cached(self, digest: str) -> str | None:
        with self.store.session() as s:
            return self.store.finished_by_hash(s, [digest]).get(digest)

    def _result(self, run_id: str) -> dict[str, Any]:
        with self.store.session() as s:
            run, result = s.get(Run, run_id), s.get(Result, run_id)
            return {
                "status": result.status,
                "error": result.error,
                "device": run.device,
                "params": result.params if result.params is not None else run.params,
                "tokens_per_s": result.tokens_per_s,
                "peak_bytes": result.peak_bytes,
                "peak_rss_bytes": result.peak_rss_bytes,
                "val_loss": (result.extra or {}).get("val_loss"),
            }

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
            constraint = peak - budget if budget else 0.0
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


def _fail_unfinished(store, study, spec: StudySpec, message: str, numbers: set[int] | None = None) -> int:
    """FAIL the study's RUNNING trials (those in `numbers`, when given) and store their unfinished runs
    as failed; returns how many. One driver runs a study at a time: on continue, every RUNNING trial is
    one a stopped driver left behind."""
    from optuna.trial import TrialState
    from sqlalchemy import select

    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=[TrialState.RUNNING])
        if numbers is None or t.number in numbers
    ]
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "error", message)
        study.tell(trial.number, state=TrialState.FAIL)
    if stale:
        with store.session() as s:
            run_ids = s.scalars(
                select(Run.id).where(
                    Run.study_name == spec.name,
                    Run.trial_number.in_([t.number for t in stale]),
                    Run.status.in_(("pending", "running")),
                )
            ).all()
        for run_id in run_ids:
            store.record_result(run_id, {"status": "failed", "phase": None, "error": message})
    return len(stale)


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
    if address:
        check_reachable(address)  # before any trial is asked for
    url = database_url(db)
    storage = _storage(url, create=False)
    try:
        store = Store(url, create=False)
    except BaseException:
        _close_storage(storage)
        raise
    try:
        probe = _load(storage, name)
        spec = _spec_of(probe)
        batch_id = int(probe.user_attrs[BATCH_ATTR])
        study = _load(storage, name, spec.make_sampler(len(probe.trials)), spec.make_pruner())
        outcome = StudyOutcome(name, batch_id)
        outcome.stale_failed = _fail_unfinished(store, study, spec, "the study driver stopped while this trial ran")
        from optuna.trial import TrialState

        started = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]  # not enqueued ones
        todo = max(0, trials - len(started))
        grid = spec.grid_size()
        if grid is not None:
            points = {t.system_attrs.get("grid_id") for t in started}
            todo = min(todo, grid - len(points - {None}))
        if on_start is not None:
            on_start(len(started), todo)
        if todo:
            store.set_batch_status(batch_id, "running")
            driver = StudyDriver(store, study, spec, batch_id, parallel, address, max_retries, on_trial)
            try:
                driver.run(todo)
            except KeyboardInterrupt:
                outcome.interrupted = True
            outcome.counts, outcome.reused = driver.counts, driver.reused
        store.set_batch_status(batch_id, "interrupted" if outcome.interrupted else "done")
        outcome.total = len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])
        return outcome
    finally:
        _close_storage(storage)
        store.close()


# ------------------------------------------------------------------------------------------ reads
def trial_records(study, spec: StudySpec) -> list[dict[str, Any]]:
    """One flat record per trial: number, state, objective values by metric, params (`param_<name>`),
    constraint, feasibility, model, run link, error, times."""
    records = []
    for t in study.get_trials(deepcopy=False):
        constraints = t.user_attrs.get("constraints")
        record = {
            "number": t.number,
            "state": t.state.name,
            "model": t.user_attrs.get("model") or spec.model_of(t.params),
        }
        for i, o in enumerate(spec.objectives):
            record[o.metric] = t.values[i] if t.values is not None else None
        record.update({f"param_{k}": v for k, v in t.params.items()})
        record["constraint"] = constraints[0] if constraints else None
        record["feasible"] = (constraints[0] <= 0) if constraints and t.state.name == "COMPLETE" else None
        record["status"] = t.user_attrs.get("status")
        record["infeasible_because"] = infeasible_reason(record) if record["feasible"] is False else None
        record["run_id"] = t.user_attrs.get("run_id")
        record["reused_run_id"] = t.user_attrs.get("reused_run_id")
        record["config_hash"] = t.user_attrs.get("config_hash")
        record["error"] = t.user_attrs.get("error")
        record["started"] = t.datetime_start.isoformat() if t.datetime_start else None
        record["completed"] = t.datetime_complete.isoformat() if t.datetime_complete else None
        record["duration_s"] = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_start and t.datetime_complete
            else None
        )
        records.append(record)
    return records


def infeasible_reason(record: dict[str, Any]) -> str:
    """Why a completed trial is infeasible: it ran out of memory, or its peak exceeded the study's budget."""
    if record["status"] == "oom":
        return "out of memory"
    return f"peak {record['constraint']:.2f} GiB over the VRAM budget"


def pareto_front(
    records: list[dict[str, Any]], objectives: tuple[Objective, ...] | list[Objective]
) -> list[dict[str, Any]]:
    """The feasible COMPLETE records that no other feasible record dominates."""
    pool = [r for r in records if r["state"] == "COMPLETE" and r["feasible"]]
    signs = [1.0 if o.direction == "minimize" else -1.0 for o in objectives]
    keys = [[s * r[o.metric] for s, o in zip(signs, objectives, strict=False)] for r in pool]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b, strict=False)) and any(x < y for x, y in zip(a, b, strict=False))

    return [r for r, k in zip(pool, keys, strict=False) if not any(dominates(other, k) for other in keys)]


def best_records(records: list[dict[str, Any]], objectives, limit: int | None = 1) -> list[dict[str, Any]]:
    """Single objective: the best feasible COMPLETE trials (best first); several: the Pareto set."""
    if len(objectives) > 1:
        return pareto_front(records, objectives)
    o = objectives[0]
    pool = [r for r in records if r["state"] == "COMPLETE" and r["feasible"]]
    pool.sort(key=lambda r: r[o.metric], reverse=o.direction == "maximize")
    return pool[:limit] if limit else pool


def _open(name: str, db: str | None):
    url = database_url(db)
    storage = _storage(url, create=False)
    try:
        study = _load(storage, name)
        return storage, study, _spec_of(study)
    except BaseException:
        _close_storage(storage)
        raise


def study_summary(name: str, db: str | None = None, top: int = 5) -> dict[str, Any]:
    """Progress (trials by state), the best feasible trials (single objective) or the Pareto set."""
    storage, study, spec = _open(name, db)
    try:
        records = trial_records(study, spec)
    finally:
        _close_storage(storage)
    states: dict[str, int] = {}
    for r in records:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return {
        "name": spec.name,
        "description": spec.description,
        "objectives": [o.label for o in spec.objectives],
        "metrics": [o.metric for o in spec.objectives],
        "sampler": spec.sampler,
        "pruner": spec.pruner,
        "vram_budget_gb": spec.vram_budget_gb,
        "batch_id": study.user_attrs.get(BATCH_ATTR),
        "trials": len(records),
        "states": states,
        "feasible": sum(1 for r in records if r["feasible"]),
        "infeasible": [r for r in records if r["feasible"] is False],
        "best": best_records(records, spec.objectives, limit=top),
        "pareto": pareto_front(records, spec.objectives) if len(spec.objectives) > 1 else None,
    }


def list_studies(db: str | None = None) -> list[dict[str, Any]]:
    """Every study in the database, oldest first: name, description, objectives, trials by state."""
    import optuna
    from optuna.trial import TrialState

    storage = _storage(database_url(db), create=False)
    try:
        listed = []
        for name in optuna.get_all_study_names(storage):  # in the order they were created
            study = _load(storage, name)
            source = study.user_attrs.get(SPEC_ATTR)
            spec = parse_study_spec(source) if source is not None else None
            trials = study.get_trials(deepcopy=False, states=tuple(TrialState))
            states: dict[str, int] = {}
            for trial in trials:
                states[trial.state.name] = states.get(trial.state.name, 0) + 1
            listed.append(
                {
                    "name": name,
                    "description": spec.description if spec else "(not created by phasebench)",
                    "objectives": [o.label for o in spec.objectives] if spec else [],
                    "trials": len(trials),
                    "states": states,
                }
            )
        return listed
    finally:
        _close_storage(storage)


def best(name: str, db: str | None = None) -> dict[str, Any]:
    """The best feasible trial (single objective) or the Pareto set (several), as `{"best": [...]}`."""
    summary = study_summary(name, db, top=1)
    return {"name": summary["name"], "objectives": summary["objectives"], "best": summary["best"]}


def export(name: str, db: str | None = None) -> list[dict[str, Any]]:
    """Every trial of the study as a flat record (see :func:`trial_records`)."""
    storage, study, spec = _open(name, db)
    try:
        return trial_records(study, spec)
    finally:
        _close_storage(storage)


def load(name: str, db: str | None = None):
    """(Optuna study, StudySpec) for dashboards; the storage stays open for the study's lifetime."""
    _, study, spec = _open(name, db)
    return study, spec


__all__ = [
    "StudySpec",
    "StudyOutcome",
    "TrialReport",
    "best",
    "create_study",
    "export",
    "load",
    "load_study_spec",
    "parse_study_spec",
    "run_study",
    "study_summary",
    "trial_records",
    "pareto_front",
]
