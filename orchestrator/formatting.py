"""Render result records as an aligned text table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any


def human_bytes(value: float) -> str:
    """1536 -> '1.50 KiB'; GiB and above keep three decimals."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.3f} {unit}" if unit == "GiB" else f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


#: (header, record key, formatter) of the default result table
RESULT_COLUMNS = (
    ("batch", "batch", str),
    ("#", "index", str),
    ("model", "model", str),
    ("v", "model_version", str),
    ("mode", "mode", str),
    ("exec", "execution", str),
    ("dev", "device", str),
    ("status", "status", str),
    ("params", "params", lambda v: f"{v:,}"),
    ("weights", "weights_bytes", human_bytes),
    ("peak", "peak_bytes", human_bytes),
    ("activation", "activation_bytes", human_bytes),
    ("tok/s", "tokens_per_s", lambda v: f"{v:,.0f}"),
    ("MFU", "mfu", lambda v: f"{100 * v:.1f}%"),
    ("phase", "phase", str),
)


def text_table(records: Iterable[dict[str, Any]], columns=RESULT_COLUMNS) -> str:
    rows = [[header for header, _, _ in columns]]
    for record in records:
        rows.append([fmt(record[key]) if record.get(key) is not None else "-" for _, key, fmt in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, indent=2, default=str, sort_keys=False)


def to_csv(records: list[dict[str, Any]]) -> str:
    """Flat CSV: nested values (config, extra) are written as JSON strings."""
    if not records:
        return ""
    keys = list(dict.fromkeys(k for r in records for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    return out.getvalue()


def render(records: list[dict[str, Any]], fmt: str, columns=RESULT_COLUMNS) -> str:
    if fmt == "json":
        return to_json(records)
    if fmt == "csv":
        return to_csv(records)
    return text_table(records, columns)
