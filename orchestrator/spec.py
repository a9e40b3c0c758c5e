"""Batch specs: YAML -> validated, resolved run configs with stable hashes.

A spec has `name`, optional `description`, `defaults`, optional `cases` (a list of partial configs, or a
mapping of named lists of partial configs that are crossed with each other) and a `grid` whose
list-valued fields expand to the cartesian product, crossed with the cases. Each resolved
config is a flat dict: the run fields below plus the model's knobs, with every default filled in.
Validation is complete before anything is written; every error is a :class:`ConfigError` naming the
field and the value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import models
from kernels.backend import BACKENDS as KERNEL_BACKENDS
from models.config import ConfigError, check_value, default_of, knob

from . import user_code
from .legacy import LEGACY_COMPILE, stored_execution
from .yamlfile import load_yaml

MAX_CONFIGS = 10_000
SPEC_KEYS = ("name", "description", "imports", "defaults", "cases", "grid")
MODES = ("inference", "train_no_optim", "train")
DEVICES = ("auto", "cuda", "cpu")
#: raise: the job raises in forward; exit: the worker process dies at start; exit_mid: a training
#: worker dies once, halfway (its retry resumes from the last checkpoint); hang: the worker blocks forever
FAULTS = ("none", "raise", "exit", "exit_mid", "hang")
JOBS = ("benchmark", "train")
#: eager: PyTorch runs the step op by op; graph: the step captured once in a CUDA graph and replayed;
#: compile: torch.compile every block; compile_graph: both, compiled blocks inside the captured step;
#: auto (the default): see default_execution
#: (docs/measurement.md, "Execution modes"). Stored rows always hold the mode that ran, never auto.
EXECUTIONS = ("eager", "graph", "compile", "compile_graph")


def captures(execution: str) -> bool:
    """Whether `execution` replays the step from a CUDA graph."""
    return execution in ("graph", "compile_graph")


def compiles(execution: str) -> bool:
    """Whether `execution` puts every block through torch.compile."""
    return execution in ("compile", "compile_graph")


TOKENIZER_VOCAB = {"byte": 256, "gpt2": 50257}
TOKENIZERS = tuple(TOKENIZER_VOCAB)


@dataclass
class RunFields:
    """What a run does, next to the model's own knobs (docs/measurement.md)."""

    model: str = knob("", help="registry name")
    job: str = knob("benchmark", choices=JOBS)
    mode: str = knob("inference", choices=MODES)
    batch_size: int = knob(1, min=1, max=1_000_000)
    seq_len: int = knob(512, min=1, max=65536)
    device: str = knob("auto", choices=DEVICES)
    num_gpus: float = knob(-1.0, min=-1.0, max=1024.0, help="-1: 1 on cuda, 0 on cpu")
    num_cpus: float = knob(1.0, gt=0.0, max=1024.0)
    resources: dict = knob({}, help="custom Ray resources a run needs, e.g. {node_a: 1}")
    isolate: bool = knob(True, help="a fresh worker process per run; false reuses workers (tiny CPU runs)")
    accelerator_type: str = knob("", help="Ray accelerator type, e.g. H100 (empty: any)")
    kernels: str = knob(
        "auto",
        choices=KERNEL_BACKENDS,
        help="auto: Triton on CUDA (or PHASEBENCH_KERNELS), torch: PyTorch references, triton: Triton",
    )
    execution: str = knob(
        "auto",
        choices=("auto", *EXECUTIONS),
        help="auto (graph for a benchmark on CUDA where the "
        "model can be captured, else eager), eager, graph (CUDA graph replay of the measured step) or compile "
        "(torch.compile every block; the first steps include the compile) or compile_graph (both)",
    )
    vram_budget_gb: float = knob(0.0, min=0.0, max=1e6, help="0: no budget")
    loss_chunk_tokens: int = knob(
        0,
        min=0,
        max=2**31,
        help="0: the whole (B, N, V) logits at once; K: the head and "
        "cross-entropy over K tokens at a time, recomputed in backward",
    )
    warmup_steps: int = knob(2, min=0, max=100_000)
    steps: int = knob(5, min=1, max=1_000_000)
    repeats: int = knob(1, min=1, max=1000)
    timeout_s: float = knob(600.0, gt=0.0, max=7 * 86400.0)
    seed: int = knob(0, min=0, max=2**63 - 1)
    fault: str = knob("none", choices=FAULTS, help="fault injection for testing the orchestrator")


@dataclass
class TrainFields:
    """What a `job: train` run adds: optimisation, data, evaluation and checkpoints (`steps` counts
    optimizer steps)."""

    lr: float = knob(3e-4, gt=0.0, max=1e3)
    min_lr_ratio: float = knob(0.1, min=0.0, max=1.0)
    lr_warmup_steps: int = knob(20, min=0, max=10_000_000)
    weight_decay: float = knob(0.1, min=0.0, max=100.0)
    grad_clip: float = knob(1.0, min=0.0, max=1e6, help="0: no clipping")
    tokens_per_step: int = knob(0, min=0, max=2**40, help="0: batch_size * seq_len (no accumulation)")
    eval_every: int = knob(50, min=0, max=10_000_000, help="0: only at the end")
    eval_tokens: int = knob(65536, min=1, max=2**40)
    data: str = knob("stdlib", help="stdlib, or a text file or folder")
    tokenizer: str = knob("byte", choices=TOKENIZERS)
    val_fraction: float = knob(0.05, gt=0.0, max=0.5)
    checkpoint_dir: str = knob("", help="empty: no checkpoints")
    checkpoint_every: int = knob(0, min=0, max=10_000_000, help="0: only at the end")


#: what `device: auto` resolves to where set: a driver that joins a cluster sets it from the cluster's nodes
#: (orchestrator/runner.py, `cluster_auto_device`); unset, this machine decides
AUTO_DEVICE: ContextVar[str | None] = ContextVar("phasebench_auto_device", default=None)

#: the run field phasebench sets from the model registry (`ModelEntry.version`), never from a spec
MODEL_VERSION = "model_version"
#: every field phasebench sets, never a spec: the model's version, and a user family's module and source
#: hash (orchestrator/user_code.py)
PHASEBENCH_FIELDS = (MODEL_VERSION, user_code.MODULE_FIELD, user_code.SOURCE_FIELD)
#: fields added after rows were stored, at the value a stored row without them means: at that value a field
#: is left out of the config hash, so a config hashes as it did before the field existed
HASH_NEUTRAL = {MODEL_VERSION: 1}

# a field's type is its annotation's text (this module has `from __future__ import annotations`)
RUN_FIELD_TYPES = {f.name: cast(str, f.type) for f in dataclasses.fields(RunFields)}
RUN_FIELD_META = {f.name: dict(f.metadata) for f in dataclasses.fields(RunFields)}
TRAIN_FIELD_TYPES = {f.name: cast(str, f.type) for f in dataclasses.fields(TrainFields)}
TRAIN_FIELD_META = {f.name: dict(f.metadata) for f in dataclasses.fields(TrainFields)}
#: fields that change how a run is executed, not what it computes (left out of the checkpoint key)
RUN_CONTROL_FIELDS = (
    "steps",
    "timeout_s",
    "num_gpus",
    "num_cpus",
    "resources",
    "accelerator_type",
    "fault",
    "eval_every",
    "checkpoint_every",
    "checkpoint_dir",
    "warmup_steps",
    "repeats",
)
TYPE_NAMES = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict}


def run_field_defaults() -> dict[str, Any]:
    """Every run field's default: what a config stored before a field existed meant by lacking it."""
    return {f.name: default_of(f) for f in dataclasses.fields(RunFields)} | HASH_NEUTRAL


def stored_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config as stored (by any version of phasebench) -> today's fields: `compile: true/false` read as
    `execution: compile/eager`, fields it lacks at what their absence meant."""
    execution = stored_execution(config)
    return run_field_defaults() | {k: v for k, v in config.items() if k != LEGACY_COMPILE} | {"execution": execution}


@dataclass(frozen=True)
class ResolvedRun:
    """One configuration of a batch: its flat config, stable hash and exact parameter count."""

    index: int
    config: dict[str, Any]
    config_hash: str
    params: int

    @property
    def model(self) -> str:
        return self.config["model"]


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    runs: list[ResolvedRun]
    source: dict[str, Any]


# -------------------------------------------------------------------------------------- validation
def as_mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(field, value, "must be a mapping")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(field, key, "keys must be strings")
    return value


def check_name_and_description(data: dict[str, Any], what: str) -> tuple[str, str]:
    """The spec's `name` (non-empty, <= 200 characters) and `description`; no NUL (PostgreSQL refuses it)."""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("name", name, f"must be a non-empty string (the {what} name)")
    if len(name) > 200:
        raise ConfigError("name", name[:40] + "...", "must be at most 200 characters")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description", description, "must be a string")
    for field, text in (("name", name), ("description", description)):
        if "\x00" in text:
            raise ConfigError(field, text, "must not contain NUL characters (PostgreSQL cannot store them)")
    return name.strip(), description


#: one case axis: (label for errors, partial config) per entry
CaseAxis = list[tuple[str, dict[str, Any]]]


def _case_axes(cases: Any) -> list[CaseAxis]:
    """`cases` as axes to cross: a list is one axis; a mapping names several (e.g. sizes x lengths)."""
    if cases is None:
        return [[("config", {})]]
    if isinstance(cases, list) and cases:
        return [[(f"cases[{i}]", as_mapping(case, f"cases[{i}]")) for i, case in enumerate(cases)]]
    if isinstance(cases, dict) and cases:
        axes = []
        for axis, entries in cases.items():
            if not isinstance(entries, list) or not entries:
                raise ConfigError(f"cases.{axis}", entries, "must be a non-empty list of mappings")
            axes.append(
                [(f"cases.{axis}[{i}]", as_mapping(case, f"cases.{axis}[{i}]")) for i, case in enumerate(entries)]
            )
        return axes
    raise ConfigError("cases", cases, "must be a non-empty list of mappings, or a mapping of named such lists")


def _merge_cases(combo: tuple[tuple[str, dict[str, Any]], ...]) -> tuple[str, dict[str, Any]]:
    """One entry per case axis -> (label, merged partial config); a field set by two axes is an error."""
    merged: dict[str, Any] = {}
    for label, case in combo:
        for key in case:
            if key in merged:
                raise ConfigError(f"{label}.{key}", case[key], "is also set by another cases axis")
        merged |= case
    return " x ".join(label for label, _ in combo), merged


def _check_top_level(data: dict[str, Any]) -> tuple[str, str, dict, list[CaseAxis], dict[str, list]]:
    for key in data:
        if key not in SPEC_KEYS:
            raise ConfigError(str(key), data[key], f"unknown spec key; expected one of {', '.join(SPEC_KEYS)}")
    name, description = check_name_and_description(data, "batch")
    defaults = as_mapping(data.get("defaults"), "defaults")
    case_axes = _case_axes(data.get("cases"))
    grid = as_mapping(data.get("grid"), "grid")
    axes = {}
    for key, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"grid.{key}", values, "is an empty list")
        axes[key] = values
    if not axes and data.get("cases") is None:
        raise ConfigError("grid", data.get("grid"), "is empty and there are no cases: the spec defines no run")
    return name, description, defaults, case_axes, axes


def _check_run_fields(config: dict[str, Any]) -> dict[str, Any]:
    """Validate and fill the run fields; returns the model's knobs (the rest)."""
    if "model" not in config:
        raise ConfigError("model", None, "is required (in defaults, cases or grid)")
    if LEGACY_COMPILE in config:
        raise ConfigError(
            LEGACY_COMPILE, config[LEGACY_COMPILE], "was replaced by the run field execution (eager, graph or compile)"
        )
    model_knobs = {}
    for key, value in list(config.items()):
        if key in RUN_FIELD_TYPES:
            config[key] = check_value(key, value, TYPE_NAMES[RUN_FIELD_TYPES[key]], RUN_FIELD_META[key])
        elif key in TRAIN_FIELD_TYPES:
            config[key] = check_value(key, value, TYPE_NAMES[TRAIN_FIELD_TYPES[key]], TRAIN_FIELD_META[key])
        else:
            model_knobs[key] = value
    models.get(config["model"])  # unknown model -> ConfigError naming `model`
    for key, value in run_field_defaults().items():
        config.setdefault(key, value)
    _check_job_fields(config)
    if config["device"] == "auto":
        config["device"] = AUTO_DEVICE.get() or ("cuda" if _cuda_available() else "cpu")
    if config["num_gpus"] == -1.0:
        config["num_gpus"] = 1.0 if config["device"] == "cuda" else 0.0
    if config["device"] == "cpu" and config["num_gpus"] > 0:
        raise ConfigError("num_gpus", config["num_gpus"], "must be 0 when device is cpu")
    if (config["mode"] != "inference" or config["job"] == "train") and config["seq_len"] < 2:
        raise ConfigError("seq_len", config["seq_len"], f"must be >= 2 in mode {config['mode']} (next-token targets)")
    if config["device"] == "cuda" and config["num_gpus"] == 0:
        raise ConfigError("num_gpus", 0.0, "must be > 0 when device is cuda")
    if captures(config["execution"]) and config["device"] != "cuda":
        raise ConfigError(
            "execution", config["execution"], f"captures a CUDA graph: needs device cuda (got {config['device']})"
        )
    return model_knobs


def _check_job_fields(config: dict[str, Any]) -> None:
    """Training fields belong to `job: train` (filled with defaults there); `mode` is `train` there."""
    if config["job"] == "benchmark":
        for key in TRAIN_FIELD_TYPES:
            if key in config:
                raise ConfigError(key, config[key], "is a training field: set job: train")
        if config["fault"] == "exit_mid":
            raise ConfigError("fault", "exit_mid", "needs job: train")
        return
    if config["mode"] not in ("inference", "train"):
        raise ConfigError("mode", config["mode"], "must be train for job: train")
    config["mode"] = "train"
    for f in dataclasses.fields(TrainFields):
        config.setdefault(f.name, default_of(f))
    if config["fault"] == "exit_mid" and not (config["checkpoint_dir"] and config["checkpoint_every"]):
        raise ConfigError(
            "fault", "exit_mid", "needs checkpoint_dir and checkpoint_every > 0 (the retried run resumes from them)"
        )
    if config["data"] != "stdlib" and not os.path.exists(os.path.expanduser(config["data"])):
        raise ConfigError("data", config["data"], "no such file or folder (or `stdlib`)")
    tokens = config["batch_size"] * config["seq_len"]
    if config["tokens_per_step"] % tokens:
        raise ConfigError(
            "tokens_per_step", config["tokens_per_step"], f"must be a multiple of batch_size * seq_len = {tokens}"
        )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def config_field_types() -> dict[str, type]:
    """Every field a stored config can hold -> its Python type: run fields, training fields, every
    registered model's knobs."""
    import typing

    kinds = {n: TYPE_NAMES[t] for n, t in (RUN_FIELD_TYPES | TRAIN_FIELD_TYPES).items()}
    for name in models.names():
        cls = models.get(name).config_cls
        hints = typing.get_type_hints(cls)
        kinds.update({f.name: hints[f.name] for f in dataclasses.fields(cls)})
    return kinds


def default_execution(config: dict[str, Any], model_config) -> str:
    """What `execution: auto` runs: `graph` on CUDA where the model can be captured (benchmarks and training
    alike), else `eager` (docs/measurement.md, "Execution modes")."""
    capturable = config["device"] == "cuda" and not model_config.graph_blocker()
    return "graph" if capturable else "eager"


def resolve_config(raw: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Validate one merged config; returns (flat resolved config, exact parameter count)."""
    config = dict(raw)
    for key in PHASEBENCH_FIELDS:
        if key in config:
            raise ConfigError(key, config[key], "is set by phasebench from the model's code, not by a spec")
    model_knobs = _check_run_fields(config)
    entry = models.get(config["model"])
    model_config = entry.make_config(model_knobs)
    if config["loss_chunk_tokens"] and not entry.chunked_loss:
        raise ConfigError(
            "loss_chunk_tokens",
            config["loss_chunk_tokens"],
            f"needs hidden() and project_to_vocab() on the model, which {config['model']} lacks "
            "(build it on models.CausalLM, or set 0)",
        )
    if config["execution"] == "auto":
        config["execution"] = default_execution(config, model_config)
    if captures(config["execution"]) and (blocker := model_config.graph_blocker()):
        raise ConfigError("execution", config["execution"], f"cannot capture {config['model']}: {blocker}")
    if config["job"] == "train" and model_config.vocab_size < TOKENIZER_VOCAB[config["tokenizer"]]:
        raise ConfigError(
            "vocab_size",
            model_config.vocab_size,
            f"must be >= {TOKENIZER_VOCAB[config['tokenizer']]} for tokenizer {config['tokenizer']}",
        )
    train = {k: config[k] for k in TRAIN_FIELD_TYPES if k in config}
    versions = {MODEL_VERSION: entry.version} | user_code.family_fields(entry)
    resolved = {k: config[k] for k in RUN_FIELD_TYPES} | train | versions | model_config.to_dict()
    return resolved, entry.estimate_params(model_config)


def check_model_version(config: dict[str, Any]) -> None:
    """A stored config (without the field: version 1) must name the version of the model code that runs it:
    a run queued before the model's math changed would otherwise store the new model under the old hash."""
    stored, current = config.get(MODEL_VERSION, 1), models.get(config["model"]).version
    if stored != current:
        raise ConfigError(
            MODEL_VERSION,
            stored,
            f"{config['model']} is at version {current} in this code; "
            "the run was queued for another: queue the spec again",
        )


def checkpoint_key(config: dict[str, Any]) -> str:
    """Hash of what a training run computes: the config without its run-control fields, so that a run
    with more steps or another timeout resumes the same checkpoint."""
    return config_hash({k: v for k, v in config.items() if k not in RUN_CONTROL_FIELDS})


def config_hash(config: dict[str, Any]) -> str:
    """Stable hash of a resolved config: sha256 of its canonical JSON, 16 hex digits, taken over
    :func:`hashed_form` (so a config keeps the hash its stored rows have)."""
    canonical = json.dumps(hashed_form(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def hashed_form(config: dict[str, Any]) -> dict[str, Any]:
    """What the hash covers: fields at their :data:`HASH_NEUTRAL` value left out, and `execution: eager`
    written as the `compile: false` it replaced; every other execution mode hashes as itself."""
    form = {k: v for k, v in config.items() if k not in HASH_NEUTRAL or v != HASH_NEUTRAL[k]}
    if form.get("execution") == "eager":
        del form["execution"]
        form[LEGACY_COMPILE] = False
    return form


def expand(data: dict[str, Any], allow_large: bool = False) -> Spec:
    """Validate a parsed spec and expand it into resolved runs; its `imports` are imported first (paths
    relative to the working directory: :func:`load_spec` makes a file's relative to the file)."""
    if not isinstance(data, dict):
        raise ConfigError("spec", data, "must be a mapping")
    data = user_code.imported(data)
    name, description, defaults, case_axes, axes = _check_top_level(data)
    n_cases = math.prod(len(axis) for axis in case_axes)
    count = n_cases * math.prod(len(v) for v in axes.values())
    if count > MAX_CONFIGS and not allow_large:
        raise ConfigError(
            "grid", f"{count} configs", f"expands to more than {MAX_CONFIGS:,} configs; pass --yes to run it"
        )
    keys = list(axes)
    runs: list[ResolvedRun] = []
    seen: dict[str, bool] = {}
    for combo in itertools.product(*case_axes):
        label, case = _merge_cases(combo)
        for point in itertools.product(*(axes[k] for k in keys)):
            merged = defaults | case | dict(zip(keys, point, strict=False))
            try:
                resolved, params = resolve_config(merged)
            except ConfigError as exc:
                where = label if n_cases > 1 else "config"
                grid_part = ", ".join(f"{k}={v}" for k, v in zip(keys, point, strict=False))
                raise ConfigError(
                    exc.field, exc.value, f"{exc.message} [{where}{' ' + grid_part if grid_part else ''}]"
                ) from None
            digest = config_hash(resolved)
            if digest in seen:
                continue  # the same resolved config twice in one spec runs once
            seen[digest] = True
            runs.append(ResolvedRun(len(runs), resolved, digest, params))
    return Spec(name, description, runs, data)


def load_spec(path: str | Path, allow_large: bool = False) -> Spec:
    return expand(load_spec_file(path), allow_large=allow_large)


def load_spec_file(path: str | Path) -> Any:
    """A spec file's content, its `imports` made relative to the file (batch and study specs alike)."""
    data = load_yaml(path)
    if isinstance(data, dict) and user_code.IMPORTS_KEY in data:
        data[user_code.IMPORTS_KEY] = user_code.absolute_imports(data[user_code.IMPORTS_KEY], Path(path).parent)
    return data
