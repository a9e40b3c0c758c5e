"""Study specs: the search space, objectives, constraints, sampler and pruner of an Optuna study."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import models
from models.config import ConfigError, check_value

from .. import user_code
from ..spec import (
    RUN_FIELD_META,
    RUN_FIELD_TYPES,
    TRAIN_FIELD_META,
    TRAIN_FIELD_TYPES,
    TYPE_NAMES,
    as_mapping,
    check_name_and_description,
    load_spec_file,
    resolve_config,
)

STUDY_KEYS = ("name", "description", "imports", "defaults", "space", "objectives", "constraints", "sampler", "pruner")
METRICS = ("params", "tokens_per_s", "peak_memory", "val_loss")
Direction = Literal["maximize", "minimize"]
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

    def bounds(self) -> tuple[float, float]:
        """(low, high) of an int or float range: the parser sets both."""
        assert self.low is not None and self.high is not None, f"{self.name} is not a range"
        return self.low, self.high

    def int_range(self) -> tuple[int, int, int]:
        """(low, high, step) of an int range: the parser checks that all three are integers."""
        low, high, step = self.low, self.high, self.step or 1
        assert isinstance(low, int) and isinstance(high, int) and isinstance(step, int), f"{self.name}: not integers"
        return low, high, step

    def grid_values(self) -> list[Any] | None:
        """Every value of the parameter, or None for a continuous range."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            low, high, step = self.int_range()
            return list(range(low, high + 1, step))
        if self.step is None:
            return None
        low_f, high_f = self.bounds()
        count = int(math.floor((high_f - low_f) / self.step + 1e-9)) + 1
        return [low_f + i * self.step for i in range(count)]

    def random_value(self, rng: random.Random) -> Any:
        values = self.grid_values()
        if values is not None and len(values) <= 100_000:
            return rng.choice(values)
        if self.kind == "int":
            low, high, _ = self.int_range()
            return rng.randint(low, high)
        low_f, high_f = self.bounds()
        if self.log:
            return math.exp(rng.uniform(math.log(low_f), math.log(high_f)))
        return rng.uniform(low_f, high_f)


@dataclass(frozen=True)
class Objective:
    direction: Direction
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
    def directions(self) -> list[Direction]:
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

    def model_of(self, params: dict[str, Any]) -> str | None:
        return params.get("model", self.defaults.get("model"))

    def make_sampler(self, offset: int = 0):
        """The configured sampler, seeded with `seed + offset` (offset: trials already in the study, so a
        continued study does not replay the random draws of its first session)."""
        import optuna

        opts: dict[str, Any] = dict(self.sampler_options)
        seed = opts.pop("seed", 0) + offset
        constraints: dict[str, Any] = {} if NATIVE_CONSTRAINTS else {"constraints_func": trial_constraints}
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
        size = 1
        for p in self.space:
            values = p.grid_values()
            assert values is not None, "the parser refuses a grid sampler over a range without step"
            size *= len(values)
        return size


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
        out.append(Objective(cast(Direction, parts[0]), parts[1]))  # checked against DIRECTIONS above
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
    data = user_code.imported(data)
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
    first: tuple[ConfigError, dict[str, Any]] | None = None
    for point in points:
        try:
            spec.resolve(point)
            return
        except ConfigError as exc:
            first = first or (exc, point)
    assert first is not None  # there are PROBES points, and each one failed
    error, failed = first
    where = ", ".join(f"{k}={v}" for k, v in failed.items())
    raise ConfigError(error.field, error.value, f"{error.message} [no sampled point resolves, e.g. {where}]")


def load_study_spec(path: str | Path) -> StudySpec:
    return parse_study_spec(load_spec_file(path))
