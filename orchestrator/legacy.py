"""Run fields of configs stored by earlier versions of phasebench, read as today's (no torch import: the
result store reads them)."""

from __future__ import annotations

from typing import Any

#: the run field `execution` replaced `compile: bool`; configs stored before carry it
LEGACY_COMPILE = "compile"


def stored_execution(config: dict[str, Any]) -> str:
    """`execution` of a stored config: its own, else `compile: true` -> compile, anything else -> eager."""
    if "execution" in config:
        return config["execution"]
    return "compile" if config.get(LEGACY_COMPILE) else "eager"
