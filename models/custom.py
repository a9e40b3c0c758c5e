"""Model families from user code: register one with what phasebench can work out by itself.

    @dataclass
    class MixerConfig(models.ModelConfig):          # the common knobs, plus the family's own
        expand: int = knob(2, min=1, max=8)

    def build(config: MixerConfig) -> nn.Module:     # forward(ids: (B, N) int64) -> logits (B, N, vocab_size)
        ...

    models.register_family("my-mixer", MixerConfig, build)

Left out, the parameter count is counted on the meta device (nothing allocated) and the forward FLOPs per
token are counted with torch's FLOP counter on the meta device at the run's length; where the forward
cannot run there, FLOPs (and with them MFU) are unknown, never guessed. A family is checked when it is
registered: its name is new, its config derives from `ModelConfig`, its builder builds the default
config, and a forward of two short sequences returns `(B, N, vocab_size)` logits (on the meta device, or
for real on the CPU where the forward reads values). Every refusal is a
`ConfigError` naming the family (the field `model`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import registry
from .config import ConfigError, ModelConfig

#: the tiny input a family's forward is checked on: (B, N)
CHECK_SHAPE = (2, 8)


def register_family(
    name: str,
    config_cls: type[ModelConfig],
    build: Callable[[Any], nn.Module],
    *,
    estimate_params: Callable[[Any], int] | None = None,
    forward_flops: Callable[[Any, int], float | None] | None = None,
    description: str = "",
    version: int = 1,
) -> registry.ModelEntry:
    """Check and register a user model family; returns its entry. `estimate_params(config)` and
    `forward_flops(config, seq_len)` (forward FLOPs per token) are counted when not given."""
    if name in registry.names():
        owner = registry.get(name).build.__module__
        raise ConfigError("model", name, f"is already registered (by {owner}); choose another family name")
    if not (isinstance(config_cls, type) and issubclass(config_cls, ModelConfig)):
        raise ConfigError("model", name, "its config must be a dataclass deriving from models.ModelConfig")
    entry = registry.ModelEntry(
        name,
        config_cls,
        build,
        estimate_params or functools.partial(counted_params, build),
        _no_mixer_estimate,
        description or (config_cls.__doc__ or "").strip().split("\n")[0],
        version,
        forward_flops=forward_flops or functools.partial(counted_forward_flops, build),
        user=True,
    )
    model = check_family(entry)
    chunked = callable(getattr(model, "hidden", None)) and callable(getattr(model, "project_to_vocab", None))
    return registry.register(dataclasses.replace(entry, chunked_loss=chunked))


def counted_params(build: Callable[[Any], nn.Module], config: ModelConfig) -> int:
    """The exact parameter count of the model `build(config)` makes, counted on the meta device."""
    with torch.device("meta"):
        return registry.count_params(build(config))


def counted_forward_flops(build: Callable[[Any], nn.Module], config: ModelConfig, seq_len: int) -> float | None:
    """Forward FLOPs per token at `seq_len` (batch 1), counted by torch's FLOP counter on the meta device;
    None where the forward cannot run there (a host read of a value, say)."""
    try:
        with torch.device("meta"):
            model = build(config)
        ids = torch.zeros(1, seq_len, dtype=torch.long, device="meta")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(ids)
    except Exception:  # noqa: BLE001  (any failure means: not countable this way)
        return None
    return counter.get_total_flops() / seq_len


def check_family(entry: registry.ModelEntry) -> nn.Module:
    """The model of the default config; ConfigError naming the family unless its builder builds it and
    it maps (B, N) token ids to (B, N, vocab_size) logits."""
    try:
        config = entry.config_cls.from_dict({})
    except ConfigError as exc:
        raise ConfigError("model", entry.name, f"its default config is invalid: {exc}") from None
    b, n = CHECK_SHAPE
    try:
        model, logits = _default_forward(entry.build, config, "meta")
    except Exception:  # noqa: BLE001  (a forward that reads values cannot run on meta: try it for real)
        try:
            model, logits = _default_forward(entry.build, config, "cpu")
        except Exception as exc:  # noqa: BLE001  (the user's code: report whatever it raised, in one line)
            first = (str(exc).strip().splitlines() or [""])[0]
            message = f"building or running the default config raised {type(exc).__name__}: {first}"
            raise ConfigError("model", entry.name, message) from None
    expected = (b, n, config.vocab_size)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError("model", entry.name, f"forward must return (B, N, vocab_size) logits {expected}, got {got}")
    return model


def _default_forward(build: Callable[[Any], nn.Module], config: ModelConfig, device: str) -> tuple[nn.Module, Any]:
    """The model `build(config)` on `device` and what it returns for CHECK_SHAPE token ids (no gradients)."""
    with torch.device(device):
        model = build(config)
    with torch.no_grad():
        return model, model(torch.zeros(*CHECK_SHAPE, dtype=torch.long, device=device))


def _no_mixer_estimate(config: ModelConfig, seq_len: int, matmul_only: bool = False) -> float:
    """A user family's FLOPs come whole from `forward_flops`, not from the built-in formula."""
    return 0.0
