"""Model zoo: transformer, phase7-seed, phase8-seed (and phase7, phase8), behind one registry."""

from . import catalog as _catalog  # noqa: F401  (fills the registry)
from .config import ConfigError, ModelConfig
from .registry import ModelEntry, count_params, get, names, register

__all__ = ["ConfigError", "ModelConfig", "ModelEntry", "count_params", "get", "names", "register"]
