"""`--where` conditions on result records, one parser for the CLI and the Python API.

A condition is `FIELD OP VALUE` with OP one of `=`, `!=`, `<`, `<=`, `>`, `>=`, or `FIELD in A,B,C`. FIELD
is a record field (`status`, `stage`, `tokens_per_s`, ...), a config field (`seq_len`, `precision`, ...)
or `tag`. Values are read as in a spec (:func:`orchestrator.yamlfile.parse_value`, so `1e-3` is a number), but
a text field compares with the text as written. A run whose field is missing matches only `!=`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..spec import config_field_types
from ..yamlfile import parse_value
from .records import RECORD_FIELDS, field_value

TAG = "tag"
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in")
_OPERATOR = re.compile(r"!=|<=|>=|=|<|>|\s+in\s+")  # the first one found splits FIELD from VALUE
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class WhereError(UserError, ValueError):
    """A condition that cannot be read, or names no field: one line naming it."""


@dataclass(frozen=True)
class Condition:
    """`field op value`; `values` holds the one value, or the candidates of `in`."""

    field: str
    op: str
    values: tuple[Any, ...]

    def matches(self, record: dict[str, Any]) -> bool:
        if self.field == TAG:
            tagged = any(value in record.get("tags", ()) for value in self.values)
            return not tagged if self.op == "!=" else tagged
        actual = field_value(record, self.field)
        if self.op == "!=":
            return not _equal(actual, self.values[0])
        if self.op in _ORDER:
            return _ordered(actual, self.values[0]) and _ORDER[self.op](actual, self.values[0])
        return any(_equal(actual, value) for value in self.values)


def parse_where(where: Mapping[str, Any] | Iterable[str] | str | None) -> tuple[Condition, ...]:
    """Conditions from `--where` expressions (one string or several) or a mapping of equalities (the API's
    `{"seq_len": 16384}`); a WhereError names an unknown field or a value of the wrong type."""
    if not where:
        return ()
    if isinstance(where, Mapping):
        for field in where:
            _field_type(field)
        return tuple(Condition(field, "=", (value,)) for field, value in where.items())
    return tuple(parse_condition(text) for text in ([where] if isinstance(where, str) else where))


def parse_condition(text: str) -> Condition:
    """One `FIELD OP VALUE` expression, its values typed by the field."""
    found = _OPERATOR.search(text)
    field = text[: found.start()].strip() if found else ""
    if found is None or not field:  # no operator leaves no field
        raise WhereError(f"--where: expected FIELD OP VALUE with OP one of {' '.join(OPERATORS)} (got {text!r})")
    op, raw = found.group().strip(), text[found.end() :].strip()
    kind = _field_type(field)
    if field == TAG and op not in ("=", "!=", "in"):
        raise WhereError(f"--where: tag takes =, != or in (got {op!r})")
    raws = [item.strip() for item in raw.split(",")] if op == "in" else [raw]
    return Condition(field, op, tuple(_typed(field, kind, item) for item in raws))


def as_conditions(items: Iterable[Any]) -> list[Condition]:
    """`Filters.where` as conditions: a `(field, value)` pair is an equality (the field is not checked)."""
    return [item if isinstance(item, Condition) else Condition(item[0], "=", (item[1],)) for item in items]


def _field_type(field: str) -> type:
    """The type a field holds; the model families (and torch) load only for a config field."""
    if field == TAG:
        return str
    if field in RECORD_FIELDS:
        return RECORD_FIELDS[field]
    kinds = config_field_types()
    if field not in kinds:
        raise WhereError(f"--where: unknown field {field!r}")
    return kinds[field]


def _typed(field: str, kind: type, raw: str) -> Any:
    """`raw` as a value of `kind`: text as written for a text field, else read as in a spec."""
    if kind is str:
        return raw
    value = parse_value(raw) if raw else ""
    if kind is bool and not isinstance(value, bool):
        raise WhereError(f"--where: {field} is true or false (got {raw!r})")
    if kind in (int, float) and not _is_number(value):
        raise WhereError(f"--where: {field} is a number (got {raw!r})")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(actual: Any, wanted: Any) -> bool:
    """Equal and of one kind (a number is never equal to a boolean or to text)."""
    same_kind = (_is_number(actual) and _is_number(wanted)) or type(actual) is type(wanted)
    return same_kind and actual == wanted


def _ordered(actual: Any, wanted: Any) -> bool:
    """Whether `<` and the like compare the two: two numbers, or two texts."""
    return (_is_number(actual) and _is_number(wanted)) or (isinstance(actual, str) and isinstance(wanted, str))
