"""Spec files read safely: bounded in size, YAML with no alias bombs and no key given twice, `1e-3` a number.

Every refusal is a `ConfigError` naming the file (`spec`), so the CLI prints it as one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from models.config import ConfigError

MAX_SPEC_BYTES = 1 << 20
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000  # after alias expansion: a few aliases can still describe a huge tree


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias bombs (more than MAX_YAML_ALIASES aliases) and a key given twice in one
    mapping (PyYAML keeps the last one silently), and reads `1e-3` as the number YAML 1.2 makes it (PyYAML's
    YAML 1.1 wants a dot: `1.0e-3`)."""

    def compose_node(self, parent, index):  # noqa: D401  (yaml hook)
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise ConfigError("spec", f"{self._aliases} aliases", f"uses more than {MAX_YAML_ALIASES} YAML aliases")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    line = f"line {key_node.start_mark.line + 1}"
                    raise ConfigError(key_node.value, line, "is given twice in one mapping (the second time at)")
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


_GuardedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def parse_value(text: str) -> Any:
    """One value written as in a spec (`--set`, `--where`): `1e-3` a number, `true` a boolean, ...; text
    that is not valid YAML is the string itself."""
    try:
        return yaml.load(text, Loader=_GuardedLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError:
        return text


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a spec file; ConfigError for a missing/unreadable/oversized/non-UTF-8/non-mapping file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:  # bounded: a pipe or a device reports size 0
            read = fh.read(MAX_SPEC_BYTES + 1)
        raw = read if len(read) <= MAX_SPEC_BYTES else None
    except FileNotFoundError:
        raise ConfigError("spec", str(path), "file not found") from None
    except IsADirectoryError:
        raise ConfigError("spec", str(path), "is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError("spec", str(path), f"cannot be read: {exc.strerror}") from None
    if raw is None:
        raise ConfigError("spec", str(path), f"is larger than {MAX_SPEC_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("spec", str(path), f"is not valid UTF-8 (byte {exc.start})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, where: str = "spec") -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_GuardedLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("spec", where, f"{problem}{at}") from None
    except RecursionError:
        raise ConfigError("spec", where, "is nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError("spec", where, "must be a YAML mapping with name, defaults, cases, grid")
    _check_expanded_size(data, where)
    return data


def _check_expanded_size(data: Any, where: str) -> None:
    """Refuse specs whose aliases expand to more than MAX_YAML_NODES values."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise ConfigError("spec", where, f"expands to more than {MAX_YAML_NODES:,} YAML values (alias bomb?)")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
