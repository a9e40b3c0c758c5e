"""A user's model code: the modules a spec imports to register model families (docs/custom-models.md).

A spec names them under `imports:` (also `--import`, `api.run(imports=...)`): a module name, or a path to a
`.py` file or a package folder, relative to the spec file. Installed packages declare an entry point in
the group `phasebench.models` instead. Importing registers the families (`models.register_family`).

A config of a user family carries two fields that phasebench sets: `model_module` (what a worker imports
to get the family) and `model_source` (a hash of that code), so that an edited model is never served from
the cache. Code imported from `imports:` is shipped to every Ray worker with the run (Ray's `py_modules`,
up to :data:`DEFAULT_LIMIT_MB` MiB, `PHASEBENCH_USER_CODE_LIMIT_MB`); an entry point's package must be
installed on the workers, like phasebench itself.

Not thread-safe: imports happen on the driver's main thread, and once per worker process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import models
from models import ConfigError

IMPORTS_KEY = "imports"
MODULE_FIELD = "model_module"
SOURCE_FIELD = "model_source"
ENTRY_POINT_GROUP = "phasebench.models"
LIMIT_ENV = "PHASEBENCH_USER_CODE_LIMIT_MB"
DEFAULT_LIMIT_MB = 20.0


@dataclass(frozen=True)
class UserCode:
    """One imported top-level module: where its code is, its hash, whether workers get it shipped."""

    root: Path  # the .py file, or the package folder
    digest: str
    shipped: bool


#: top-level module name -> its code, for every module imported through this module
_CODE: dict[str, UserCode] = {}


def absolute_imports(entries: Any, base: Path) -> list[str]:
    """A spec's `imports` with every path made absolute against `base` (the spec's folder); module names
    that are not files or folders next to the spec are kept as they are."""
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, str) and e.strip() for e in entries):
        raise ConfigError(IMPORTS_KEY, entries, "must be a list of module names or paths (.py files, package folders)")
    return [_locate(entry.strip(), base) for entry in entries]


def _locate(entry: str, base: Path) -> str:
    path = base / Path(entry).expanduser()
    if entry.endswith(".py") or "/" in entry or os.sep in entry:
        if not path.exists():
            raise ConfigError(IMPORTS_KEY, entry, f"no such file or folder (relative to {base})")
        return str(path.resolve())
    if (base / f"{entry}.py").is_file():
        return str((base / f"{entry}.py").resolve())
    if (path / "__init__.py").is_file():
        return str(path.resolve())
    return entry


def imported(data: dict[str, Any]) -> dict[str, Any]:
    """A parsed spec (batch or study) after importing its `imports` (paths relative to the working
    directory) and the entry points; its `imports` made absolute, so that a stored spec imports the same."""
    if IMPORTS_KEY not in data:
        load_entry_points()
        return data
    return data | {IMPORTS_KEY: import_all(absolute_imports(data[IMPORTS_KEY], Path.cwd()))}


def with_extra_imports(data: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """A parsed spec with `extra` imports (`--import`, `imports=`; relative to the working directory) added."""
    return data | {IMPORTS_KEY: [*(data.get(IMPORTS_KEY) or []), *absolute_imports(extra, Path.cwd())]}


def import_all(entries: list[str]) -> list[str]:
    """Import every entry point of `phasebench.models` and each of `entries` (absolute paths or module
    names); returns the entries. A module that fails to import is a ConfigError naming it, with the first
    line of its error; a registration error (a taken family name, a broken builder) passes through."""
    load_entry_points()
    for entry in entries:
        if os.path.isabs(entry):
            _import_path(Path(entry))
        else:
            _import_name(entry, shipped=True)
    return entries


def load_entry_points() -> None:
    """Import the modules that installed packages declare in the entry-point group `phasebench.models`."""
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _import_name(point.value.split(":")[0], shipped=False)


def _import_path(path: Path) -> None:
    package = path.is_dir()
    if package and not (path / "__init__.py").exists():
        raise ConfigError(IMPORTS_KEY, str(path), "is a folder without __init__.py: not a package")
    name = path.name if package else path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if _root_of(loaded) != path:
            raise ConfigError(IMPORTS_KEY, str(path), f"its module name {name!r} is taken by {_describe(loaded)}")
        _remember(name, path, shipped=True)
        return
    init, search = (path / "__init__.py", [str(path)]) if package else (path, None)
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=search)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        raise _import_error(str(path), exc) from None
    _remember(name, path, shipped=True)


def _import_name(name: str, shipped: bool) -> None:
    try:
        module = importlib.import_module(name)
    except BaseException as exc:
        raise _import_error(name, exc) from None
    top = sys.modules[name.split(".")[0]]
    root = _root_of(top)
    if root is None:
        raise ConfigError(IMPORTS_KEY, name, f"{_describe(module)} has no source file to hash or ship")
    _remember(top.__name__, root, shipped)


def _import_error(entry: str, exc: BaseException) -> BaseException:
    if isinstance(exc, ConfigError) or not isinstance(exc, Exception):
        return exc  # a family's own registration error, or Ctrl-C
    first = (str(exc).strip().splitlines() or [""])[0]
    return ConfigError(IMPORTS_KEY, entry, f"failed to import: {type(exc).__name__}: {first}".rstrip(": "))


def _remember(name: str, root: Path, shipped: bool) -> None:
    digest = source_digest(root)
    known = _CODE.get(name)
    if known is not None and known.digest != digest:
        raise ConfigError(
            IMPORTS_KEY, str(root), "changed since this process imported it: start a new process to use the new code"
        )
    if shipped:
        check_size(root)
    _CODE[name] = UserCode(root, digest, shipped)


def _root_of(module) -> Path | None:
    """The file of a module, or the folder of a package; None for a built-in or namespace module."""
    file = getattr(module, "__file__", None)
    if file is None:
        return None
    path = Path(file).resolve()
    return path.parent if path.name == "__init__.py" else path


def _describe(module) -> str:
    root = _root_of(module)
    return f"module {module.__name__!r} ({root})" if root else f"the built-in module {module.__name__!r}"


def _code_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def source_digest(root: Path) -> str:
    """sha256 (16 hex digits) of the Python source of a module file or package folder."""
    h = hashlib.sha256()
    for path in _code_files(root):
        if path.suffix == ".py":
            h.update(str(path.relative_to(root.parent if root.is_file() else root)).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def check_size(root: Path) -> None:
    """ConfigError unless the files shipped with a module fit the limit (Ray uploads the whole folder)."""
    limit_mb = float(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT_MB))
    size = sum(p.stat().st_size for p in _code_files(root))
    if size > limit_mb * 2**20:
        raise ConfigError(
            IMPORTS_KEY,
            str(root),
            f"is {size / 2**20:.1f} MiB of files; code shipped to workers is limited to {limit_mb:g} MiB ({LIMIT_ENV})",
        )


def family_fields(entry) -> dict[str, str]:
    """`model_module` and `model_source` of a user family's configs; {} for a built-in family. A family
    registered from a module workers cannot import (a script's `__main__`) is a ConfigError."""
    if not entry.user:
        return {}
    module = entry.build.__module__
    code = _CODE.get(module.split(".")[0])
    if code is None:
        raise ConfigError(
            "model",
            entry.name,
            f"is registered by {module!r}, which workers cannot import: put the family in a module and name "
            "it in the spec's imports (or --import, api.run(imports=...))",
        )
    return {MODULE_FIELD: module, SOURCE_FIELD: code.digest}


def shipped_roots() -> list[str]:
    """The files and package folders of every module imported through `imports` in this process: what a
    Ray job started now ships to its workers (Ray's job-level `py_modules`)."""
    return sorted(str(code.root) for code in _CODE.values() if code.shipped)


def load_family(config: dict[str, Any]) -> None:
    """On a worker: import the module a user family's config names and check that its code is the code
    the run was queued with (`model_source`)."""
    module = config.get(MODULE_FIELD)
    if module is None:
        return
    load_entry_points()
    _import_name(module, shipped=False)
    check_source(config)
    models.get(config["model"])  # registered by that import, or a one-line error naming the family


def check_source(config: dict[str, Any]) -> None:
    """ConfigError unless a queued config's `model_source` is the hash of its module's code as imported
    in this process (nothing to check for a built-in family)."""
    module = config.get(MODULE_FIELD)
    code = _CODE.get(module.split(".")[0]) if module else None
    if code is None:
        return
    if code.digest != config[SOURCE_FIELD]:
        raise ConfigError(
            SOURCE_FIELD,
            config[SOURCE_FIELD],
            f"{config['model']}'s code ({module}) now hashes {code.digest}: it changed after the run was queued; "
            "queue the spec again",
        )
