"""`--set KEY=VALUE`: settings over a spec's defaults (`phasebench run`, `study create`, the bench scripts)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ConfigError
from .spec import as_mapping
from .yamlfile import parse_value


def parse_settings(pairs: Iterable[str]) -> dict[str, Any]:
    """`key=value` pairs, values read as in a spec (numbers, booleans, strings); the last of a key wins."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", pair, "expected key=value")
        settings[key.strip()] = parse_value(value)
    return settings


def with_defaults(data: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The parsed spec `data` with `settings` over its `defaults`. A key the spec's grid, cases or study
    space also sets is a ConfigError naming it: those win over defaults, so the setting would not apply."""
    for key in settings:
        if key in _varied(data):
            raise ConfigError(
                f"--set {key}", settings[key], "is varied by the spec's grid, cases or space; set it there"
            )
    return data | {"defaults": as_mapping(data.get("defaults"), "defaults") | settings}


def _varied(data: dict[str, Any]) -> set[str]:
    """The fields a spec's grid, cases (a list, or named lists) or study space set."""
    cases = data.get("cases")
    if isinstance(cases, dict):
        cases = [case for axis in cases.values() if isinstance(axis, list) for case in axis]
    mappings = [data.get("grid"), data.get("space"), *(cases if isinstance(cases, list) else [])]
    return {key for mapping in mappings if isinstance(mapping, dict) for key in mapping}
