"""Render result records as an aligned text table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from .store.records import field_value


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
    ("stage", "stage", str),
)


#: the columns `results list` always shows: the run id (its first 10 characters) and the default ones
LISTED_COLUMNS = (("run", "run_id", lambda v: v[:10]), *RESULT_COLUMNS)
#: figures a training run keeps in `extra`, shown when a training run is listed
TRAIN_FIGURES = (("loss", "loss"), ("val loss", "val_loss"), ("bpb", "bits_per_byte"))
#: a run's tags and note, shown when a listed run has any
ANNOTATION_COLUMNS = (
    ("tags", "tags", lambda tags: ",".join(tags) or "-"),
    ("note", "note", lambda text: " ".join(text.split())),
)


def _plain(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def swept_fields(records: list[dict[str, Any]]) -> list[str]:
    """Config fields every record has and whose value differs between them (what a spec's grid or cases
    varied; a knob of one family only is not a swept field)."""
    configs = [r.get("config") or {} for r in records]
    shown = {key for _, key, _ in LISTED_COLUMNS}
    common = [k for k in (configs[0] if configs else {}) if k not in shown and all(k in c for c in configs)]
    return [k for k in common if len({json.dumps(c[k], sort_keys=True, default=str) for c in configs}) > 1]


def list_columns(records: list[dict[str, Any]], names: list[str] | None = None) -> list[tuple]:
    """The columns of `phasebench results list`: the run id, the default columns, the swept config fields
    and, when a training run is listed, its final loss, validation loss and bits per byte, then the tags
    and the note where a listed run has one; or exactly `names` (a column header, a record key, a config
    field or an `extra` figure each)."""
    if names:
        by_header = {header: (header, key, fmt) for header, key, fmt in LISTED_COLUMNS + ANNOTATION_COLUMNS}
        return [by_header.get(name) or (name, name, _plain) for name in names]
    columns = list(LISTED_COLUMNS[:3])
    columns += [(name, name, _plain) for name in swept_fields(records)] + list(LISTED_COLUMNS[3:])
    if any(field_value(r, "job") == "train" for r in records):
        columns += [(header, key, _plain) for header, key in TRAIN_FIGURES]
    columns += [column for column in ANNOTATION_COLUMNS if any(r.get(column[1]) for r in records)]
    return columns


def sorted_by(records: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """`records` ordered by a field or a column header (`-field`: descending); records without it last."""
    name, descending = key.lstrip("-"), key.startswith("-")
    name = next((k for header, k, _ in LISTED_COLUMNS if header == name), name)
    present = [r for r in records if field_value(r, name) is not None]
    missing = [r for r in records if field_value(r, name) is None]
    present.sort(key=lambda r: (isinstance(field_value(r, name), str), field_value(r, name)), reverse=descending)
    return present + missing


def text_table(records: Iterable[dict[str, Any]], columns=RESULT_COLUMNS) -> str:
    rows = [[header for header, _, _ in columns]]
    for record in records:
        values = [field_value(record, key) for _, key, _ in columns]
        rows.append([fmt(v) if v is not None else "-" for v, (_, _, fmt) in zip(values, columns, strict=True)])
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
