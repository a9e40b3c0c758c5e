"""Dashboard inputs that are not the database, read and checked before anything is written: result rows
exported with `phasebench results export --format json`, and kernel benchmarks written by
`bench/kernels.py`. Bad input is a UserError naming the option and the file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError
from orchestrator.store.schema import METRIC_COLUMNS

ROW_KEYS = ("run_id", "batch", "model", "mode", "device", "status", "config")
#: the largest input file read (a device or a pipe reports no size: the read itself is bounded)
MAX_INPUT_BYTES = 512 * 2**20


def read_json(option: str, path: str | Path) -> Any:
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_INPUT_BYTES + 1)
        if len(raw) > MAX_INPUT_BYTES:
            raise UserError(f"{option}: {path} is larger than {MAX_INPUT_BYTES // 2**20} MiB")
        return json.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise UserError(f"{option}: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UserError(f"{option}: {path} is not JSON ({exc})") from None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def export_problem(data: Any) -> str | None:
    """What keeps `data` from being a list of exported result rows, or None."""
    if not isinstance(data, list):
        return "expected a JSON list of result rows"
    for i, row in enumerate(data):
        missing = [k for k in ROW_KEYS if k not in row] if isinstance(row, dict) else list(ROW_KEYS)
        if missing:
            return f"row {i} lacks {', '.join(missing)}"
        if not isinstance(row["config"], dict) or not isinstance(row["config"].get("seq_len"), int):
            return f"row {i}: config is not a mapping with seq_len"
        wrong = [k for k in METRIC_COLUMNS if row.get(k) is not None and not is_number(row[k])]
        if wrong:
            return f"row {i}: {', '.join(wrong)} not a number"
    return None


def read_exports(paths: Iterable[str]) -> list[dict[str, Any]]:
    """The rows of every `phasebench results export --format json` file, in order."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        data = read_json("--from-export", path)
        problem = export_problem(data)
        if problem:
            raise UserError(
                f"--from-export: {path}: {problem} (write one with "
                "`phasebench results export --format json --out FILE`)"
            )
        rows.extend(data)
    return rows


def kernel_problem(data: Any) -> str | None:
    """What keeps `data` from being a bench/kernels.py result, or None."""
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return "expected a JSON object with a rows list"
    if not is_number(data.get("copy_bandwidth_Bps")) or data["copy_bandwidth_Bps"] <= 0:
        return "copy_bandwidth_Bps is not a positive number"
    for i, row in enumerate(data["rows"]):
        if not (
            isinstance(row, dict)
            and isinstance(row.get("op"), str)
            and isinstance(row.get("shape"), dict)
            and isinstance(row["shape"].get("N"), int)
            and isinstance(row.get("impls"), dict)
        ):
            return f"row {i} lacks op, shape.N or impls"
        if not all(row.get(k) is None or is_number(row[k]) for k in ("bytes_fwd", "bytes_fwd_bwd")):
            return f"row {i}: bytes_fwd / bytes_fwd_bwd not a number"
        if not all(timings_ok(impl) for impl in row["impls"].values()):
            return f"row {i}: an implementation's fwd / fwd_bwd is not a record with a numeric median_ms"
    return None


def timings_ok(impl: Any) -> bool:
    """An implementation's record: fwd / fwd_bwd absent or mappings whose median_ms is absent or a number."""
    if not isinstance(impl, dict):
        return False
    records = [impl.get(kind, {}) for kind in ("fwd", "fwd_bwd")]
    return all(isinstance(r, dict) and (r.get("median_ms") is None or is_number(r["median_ms"])) for r in records)


def read_kernels(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Every bench/kernels.py JSON file, each with its file `name` added."""
    files = []
    for path in paths:
        data = read_json("--kernels", path)
        problem = kernel_problem(data)
        if problem:
            raise UserError(f"--kernels: {path}: {problem} (write one with `python bench/kernels.py --out FILE`)")
        files.append(data | {"name": Path(path).name})
    return files
