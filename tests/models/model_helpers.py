"""Shared helpers of the model tests: tiny configs, seeded builds, state transfer, saved-bytes counter."""

from __future__ import annotations

import torch

from models import catalog  # noqa: F401  (registers the models)
from models.registry import get

TINY = dict(vocab_size=256, d_model=32, n_layers=2, n_heads=4, grad_checkpoint=False)
ALL_ON = dict(entailment=True, homology=True, sheaf=True)


def build(name: str, dtype=torch.float32, seed: int = 0, **knobs):
    """(model, config) with TINY knobs overridden by `knobs`."""
    entry = get(name)
    config = entry.make_config({**TINY, **knobs})
    torch.manual_seed(seed)
    model = entry.build(config).to(dtype)
    return model, config


def transfer(src: torch.nn.Module, dst: torch.nn.Module) -> set[str]:
    """Copy every parameter `dst` shares with `src`; returns the names of src's parameters dst lacks."""
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    assert not missing, f"target has parameters the source lacks: {missing}"
    return set(unexpected)


def saved_bytes(fn) -> int:
    """Bytes of unique storages saved for backward while running fn() (parameters excluded)."""
    seen: dict[int, int] = {}
    params: set[int] = set()

    def pack(t):
        if t.device.type != "meta":
            ptr = t.untyped_storage().data_ptr()
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(params)
    return sum(n for p, n in seen.items() if p not in params)
