"""A user's model family (models/custom.py): registered from user code, its parameters and FLOPs counted
when not given, and every bad family refused with one line naming it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import models
from models import custom, registry
from models.config import ConfigError, ModelConfig, knob


@dataclass
class MlpConfig(ModelConfig):
    """Token-wise MLP language model (a test family)."""

    expand: int = knob(2, min=1, max=8)


class MlpLM(nn.Module):
    def __init__(self, config: MlpConfig):
        super().__init__()
        d = config.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.mlp = nn.Sequential(nn.Linear(d, config.expand * d), nn.GELU(), nn.Linear(config.expand * d, d))
        self.head = nn.Linear(d, config.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)  # (B, N, d)
        return self.head(x + self.mlp(x))  # (B, N, V)


SMALL = {"vocab_size": 64, "d_model": 16, "n_heads": 2, "n_layers": 1, "expand": 3}


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Each test registers into a copy: the built-in families stay, nothing leaks into other tests."""
    models.names()  # fill the registry with the built-ins first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_a_family_registers_and_its_parameters_and_flops_are_counted():
    entry = models.register_family("my-mlp", MlpConfig, MlpLM)
    assert models.get("my-mlp") is entry and "my-mlp" in models.names()
    assert entry.description == "Token-wise MLP language model (a test family)."
    config = entry.make_config(SMALL)
    model = MlpLM(config)
    assert (
        entry.estimate_params(config)
        == models.count_params(model)
        == 64 * 16 + (16 * 48 + 48) + (48 * 16 + 16) + 16 * 64
    )
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 10, dtype=torch.long))
    assert entry.flops_per_token(config, 10, "inference") == counter.get_total_flops() / 10
    assert entry.flops_per_token(config, 10, "train") == 3 * counter.get_total_flops() / 10


def test_flops_of_a_family_built_on_the_shell_are_counted_at_a_padded_vocabulary():
    """models.CausalLM pads the head's vocabulary to a multiple of 64 through an autocast-aware cast, which
    must not ask the meta device for an autocast dtype (it has none): FLOPs would be unknown."""
    transformer = models.get("transformer")
    config = transformer.make_config({"vocab_size": 50257, "d_model": 64, "n_layers": 1, "n_heads": 2})
    flops = custom.counted_forward_flops(transformer.build, config, 32)
    with FlopCounterMode(display=False) as counter:
        transformer.build(config)(torch.zeros(1, 32, dtype=torch.long))
    assert flops == pytest.approx(counter.get_total_flops() / 32, rel=0.01)  # SDPA counted by its formula on meta


def test_given_counts_are_used_and_an_uncountable_forward_is_unknown_not_guessed():
    counts = {"estimate_params": lambda c: 7, "forward_flops": lambda c, n: 9.0}
    given = models.register_family("given", MlpConfig, MlpLM, **counts)
    config = given.make_config({})
    assert given.estimate_params(config) == 7 and given.flops_per_token(config, 5, "inference") == 9.0

    class HostRead(MlpLM):
        def forward(self, ids):
            if ids.is_meta:  # a value read (`.item()`, a data-dependent branch) cannot run on the meta device
                raise NotImplementedError("needs a value")
            return super().forward(ids)

    entry = models.register_family("host-read", MlpConfig, HostRead)  # checked for real, on the CPU
    config = entry.make_config(SMALL)
    assert entry.estimate_params(config) == models.count_params(HostRead(config))  # building on meta works
    assert entry.flops_per_token(config, 10, "train") is None  # so MFU is unknown, not wrong


@pytest.mark.parametrize(
    "name, config_cls, build, message",
    [
        ("transformer", MlpConfig, MlpLM, "model: is already registered (by models.transformer)"),
        ("no-config", dict, MlpLM, "model: its config must be a dataclass deriving from models.ModelConfig"),
        ("raises", MlpConfig, lambda config: 1 / 0, "raised ZeroDivisionError: division by zero"),
        (
            "hidden",
            MlpConfig,
            lambda config: nn.Embedding(config.vocab_size, config.d_model),
            "(2, 8, 50257), got (2, 8, 512)",
        ),
        ("not-a-tensor", MlpConfig, lambda config: lambda ids: "logits", "got str"),
    ],
)
def test_a_bad_family_is_one_line_naming_it_and_is_not_registered(name, config_cls, build, message):
    before = models.names()
    with pytest.raises(ConfigError) as raised:
        models.register_family(name, config_cls, build)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert str(raised.value).startswith("model: ") and raised.value.value == name
    assert models.names() == before
