"""Model zoo: transformer, phase7-seed, phase8-seed (and phase7, phase8), behind one registry.

The registry and the families (and with them torch) load on first use of a registry name, so that a
command that never touches a model (`phasebench --help`, `phasebench results list`) does not pay for them.
"""

from .config import ConfigError, ModelConfig, knob

_REGISTRY_NAMES = ("ModelEntry", "count_params", "get", "names", "register", "register_family")
#: the shell a user family can build on (docs/custom-models.md): embedding -> blocks -> norm -> head
_SHELL_NAMES = ("CausalLM", "PreNormBlock")
__all__ = ["ConfigError", "ModelConfig", "knob", *_REGISTRY_NAMES, *_SHELL_NAMES]


def __getattr__(name: str):
    if name in _SHELL_NAMES:
        from . import base

        return getattr(base, name)
    if name not in _REGISTRY_NAMES:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    from . import catalog, custom, registry  # noqa: F401  (the catalog fills the registry)

    for public in _REGISTRY_NAMES:
        globals()[public] = getattr(custom if public == "register_family" else registry, public)
    return globals()[name]
