"""Errors the CLI turns into one line and an exit code."""

from __future__ import annotations

from models.config import ConfigError


class UserError(Exception):
    """Bad input (spec, arguments, database state): one line, exit code 2, nothing written."""

    exit_code = 2


__all__ = ["ConfigError", "UserError"]
