"""Model configurations: the common knobs of every model, typed fields with bounds, validation.

A config is a dataclass; each field's metadata may carry `min`, `max` (inclusive), `gt` (exclusive
lower bound) and `choices`. :meth:`ModelConfig.from_dict` rejects unknown keys and wrong types and
raises :class:`ConfigError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

PRECISIONS = ("fp32", "amp_fp16", "amp_bf16", "pure_fp16", "pure_bf16")


class ConfigError(ValueError):
    """A bad configuration value; `str()` is one line naming the field and the value."""

    def __init__(self, field_name: str, value: Any, message: str):
        self.field = field_name
        self.value = value
        self.message = message
        super().__init__(f"{field_name}: {message} (got {value!r})")

    def __reduce__(self):
        """Pickled with its three arguments, so that one raised in a Ray worker reaches the driver whole."""
        return type(self), (self.field, self.value, self.message)


def knob(default: Any, **meta: Any) -> Any:
    """A config field with validation metadata (min, max, gt, choices, help)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (calling its factory where it has one)."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def check_value(name: str, value: Any, kind: type, meta: dict) -> Any:
    """Type- and range-check one value; returns it coerced (int -> float where a float is wanted)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, value, "must be true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, value, "must be an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, value, "must be a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(name, value, "must be finite")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(name, value, "must be a string")
    elif kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(name, value, "must be a mapping of resource name to amount")
        for key, amount in value.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(name, key, "resource names must be non-empty strings")
            check_value(f"{name}.{key}", amount, float, {"min": 0.0, "max": 1e9})
        return {k: float(v) for k, v in value.items()}
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(name, value, f"must be one of {', '.join(map(str, meta['choices']))}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(name, value, f"must be >= {meta['min']}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(name, value, f"must be <= {meta['max']}")
    if "gt" in meta and value <= meta["gt"]:
        raise ConfigError(name, value, f"must be > {meta['gt']}")
    return value


@dataclass
class ModelConfig:
    """Common knobs of every model (docs/models.md, "Common knobs")."""

    vocab_size: int = knob(50257, min=2, max=1_000_000)
    d_model: int = knob(512, min=1, max=65536)
    n_layers: int = knob(4, min=1, max=1024)
    n_heads: int = knob(8, min=1, max=1024)
    embed_rank_ratio: float = knob(1.0, gt=0.0, max=1.0)
    ffn_rank_ratio: float = knob(1.0, min=0.0, max=1.0)
    ffn_mult: int = knob(4, min=1, max=64)
    embedding: str = knob("lowrank", choices=("lowrank", "htt"))
    tie_head: bool = knob(False)
    precision: str = knob("fp32", choices=PRECISIONS)
    grad_checkpoint: bool = knob(True)
    causal: bool = knob(True)

    #: knobs that only describe how the model runs; they do not change its parameters.
    runtime_knobs: ClassVar[tuple[str, ...]] = ("precision", "grad_checkpoint")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build and validate a config; unknown keys and bad values raise ConfigError."""
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        clean = {}
        for name, value in values.items():
            if name not in fields:
                raise ConfigError(name, value, f"unknown field for {cls.__name__}")
            clean[name] = check_value(name, value, hints[name], dict(fields[name].metadata))
        config = cls(**clean)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def embed_rank(self) -> int:
        return round(self.embed_rank_ratio * self.d_model)

    @property
    def ffn_rank(self) -> int:
        return round(self.ffn_rank_ratio * self.d_model)

    def graph_blocker(self) -> str | None:
        """Why a step of this model cannot be captured in a CUDA graph (a module that syncs the host), or
        None; subclasses extend."""
        return None

    def validate(self) -> None:
        """Cross-field checks; subclasses extend (call super)."""
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", self.n_heads, f"must divide d_model={self.d_model}")
        if self.embed_rank_ratio < 1.0 and self.embed_rank < 1:
            raise ConfigError("embed_rank_ratio", self.embed_rank_ratio, f"gives rank < 1 at d_model={self.d_model}")
        if 0.0 < self.ffn_rank_ratio < 1.0 and self.ffn_rank < 1:
            raise ConfigError("ffn_rank_ratio", self.ffn_rank_ratio, f"gives rank < 1 at d_model={self.d_model}")
        if self.tie_head and self.embedding == "lowrank" and self.embed_rank_ratio < 1.0:
            raise ConfigError(
                "tie_head", self.tie_head, "needs a dense embedding (embed_rank_ratio=1) or embedding=htt"
            )
