"""What runs inside a Ray worker: one configuration's job, its environment and the node it ran on.

Isolation (`isolate: true`, the default) gives every run a process of its own: a fresh CUDA context and
allocator, nothing cached from another run. Starting a Python process that imports torch costs seconds,
so the process is not started, it is forked: the task runs on a reused Ray worker, the *fork server*,
that imported torch, the models and the jobs once and never touches CUDA; for each run it forks a child
that runs the job and sends its streamed metrics and its outcome back through a pipe, with the names of
the torch, Triton and kernel modules it had to import: the server imports those for the children after it. The
child dies with its server (`PR_SET_PDEATHSIG`), so a timeout's force-cancel of the task leaves no process
behind; a child that ends without an outcome (a crash, the `exit` fault) takes the server down with it,
so Ray sees a dead worker and retries the run as it would a dead fresh process.
`PHASEBENCH_ISOLATION=process` (on the driver) goes back to a fresh Ray worker process per run
(`max_calls=1`).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from typing import Any

#: the driver's choice of isolation scheme: fork (default) or process
ISOLATION_ENV = "PHASEBENCH_ISOLATION"
#: set on fork servers only, so that Ray keeps them in a worker pool of their own
FORK_SERVER_ENV = "PHASEBENCH_FORK_SERVER"
#: the packages whose modules a fork server imports once a child has needed them (see `_adopt`): our kernels'
#: Triton modules are imported on a kernel's first call, where Triton is usable
ADOPTED_PACKAGES = ("torch", "triton", "kernels")
_PR_SET_PDEATHSIG = 1
_HEADER = struct.Struct("!Q")

Emit = Callable[[list[dict[str, Any]]], None]


def isolation_scheme() -> str:
    """The driver's isolation scheme (`PHASEBENCH_ISOLATION`): fork (default) or process; a UserError
    naming the variable otherwise. Checked before a batch or study writes anything."""
    from .errors import UserError

    scheme = os.environ.get(ISOLATION_ENV, "fork")
    if scheme not in ("fork", "process"):
        raise UserError(f"{ISOLATION_ENV}: must be fork or process (got {scheme!r})")
    return scheme


def run_job(config: dict[str, Any], git: dict[str, Any], emit: Emit | None) -> dict[str, Any]:
    """Run the job a resolved config asks for and describe where it ran; `emit(rows)` receives a
    training run's metrics as it goes. An exception outside the job's own handling (the user's model code
    failing to import, say) becomes a failed outcome with its type and message: never one that the driver
    cannot unpickle."""
    try:
        return _run_job(config, git, emit)
    except Exception as exc:  # noqa: BLE001  (whatever it is, the stored row says what)
        first = (str(exc).strip().splitlines() or [""])[0]
        return {"status": "failed", "stage": None, "error": f"{type(exc).__name__}: {first}".rstrip(": "), "extra": {}}


def _run_job(config: dict[str, Any], git: dict[str, Any], emit: Emit | None) -> dict[str, Any]:
    from .environment import collect
    from .spec import check_model_version, stored_config
    from .user_code import load_family

    config = stored_config(config)  # a config stored before a run field existed lacks it
    load_family(config)
    check_model_version(config)
    if config["fault"] == "exit":
        os._exit(1)  # injected worker death: Ray retries, then the run is stored as failed
    if config["fault"] == "hang":
        threading.Event().wait()  # injected hang: only the runner's timeout_s ends it
    if config["job"] == "train":
        from .train import run_training

        outcome = run_training(config, emit)
    else:
        from .measure import run_benchmark

        outcome = run_benchmark(config)
    outcome["environment"] = collect(config["device"], git)
    outcome.setdefault("extra", {})["worker_pid"] = os.getpid()
    return outcome


def execute(config: dict[str, Any], git: dict[str, Any], run_id: str | None = None, metrics=None) -> dict[str, Any]:
    """Run a job in this worker process (`isolate: false`). `metrics` (a `ray.util.queue.Queue`)
    receives `(run_id, rows)` while a training run goes on."""
    emit = (lambda rows: metrics.put((run_id, rows))) if metrics is not None else None
    outcome = run_job(config, git, emit)
    outcome["extra"].setdefault("isolation", "shared")
    return outcome | {"node_id": _node_id()}


def execute_isolated(*args, **kwargs) -> dict[str, Any]:
    """:func:`execute` under its own name, so that Ray can register it with `max_calls=1` (a fresh
    worker process per run, `PHASEBENCH_ISOLATION=process`) beside the reusable :func:`execute`."""
    outcome = execute(*args, **kwargs)
    outcome["extra"]["isolation"] = "process"
    return outcome


def execute_forked(config: dict[str, Any], git: dict[str, Any], run_id: str | None = None, metrics=None):
    """Run a job in a child forked from this fork server (the default isolation)."""
    _warm_up(config)
    _adopt(_LEARNED)
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # a multi-threaded parent: the child uses no thread
        pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(config, git, write_fd, os.getppid())
    os.close(write_fd)
    outcome, imported = _relay(read_fd, run_id, metrics)
    _LEARNED.update(imported)
    os.waitpid(pid, 0)
    if outcome is None:
        os._exit(1)  # the child died without an outcome: so does its worker, and Ray retries the run
    outcome["extra"] |= {"isolation": "fork", "fork_server_pid": os.getpid()}
    return outcome | {"node_id": _node_id()}


def _warm_up(config: dict[str, Any]) -> None:
    """What a run of `config` imports, imported once per fork server; CUDA stays untouched (a forked child
    could not use a context its parent made). torch._dynamo (~2 s of CPU) is imported for runs on a GPU,
    whose custom ops' first call imports it, and for compiled ones; Triton's hash and torch's Triton ops only
    for runs on a GPU (the only ones that compile Triton kernels). What a CPU child imports after all, the
    server adopts (`_adopt`)."""
    import torch

    import models  # noqa: F401

    from . import environment, measure, train  # noqa: F401
    from .spec import compiles

    on_gpu = config["device"] != "cpu"
    if on_gpu or compiles(config["execution"]):
        import torch._dynamo  # noqa: F401  (a custom op's first call imports it: ~5 s per child on the H200)
    if on_gpu:
        _triton_key()()
        _register_torch_triton_ops()
    if torch.cuda.is_initialized():
        raise RuntimeError("the fork server initialised CUDA: its children could not use the GPU")


def _triton_key():
    """Triton's hash of its own sources and libtriton (cached per process; ~0.35 s on the CPU VM), which it
    computes before it compiles a kernel or loads one from its disk cache: computed once by the server, every
    child inherits it. It moved to `triton.runtime.cache` in Triton 3.5."""
    try:
        from triton.runtime.cache import triton_key
    except ImportError:
        from triton.compiler.compiler import triton_key  # type: ignore[no-redef]
    return triton_key


def _register_torch_triton_ops() -> None:
    """torch registers its own Triton ops (sparse matmuls) at CUDA init, ~0.25 s per child on the H200; the
    registration is dispatcher state only and idempotent, so the server does it and a child's CUDA init finds
    it done. A private torch hook: skipped where a torch release does not have it."""
    import torch

    register = getattr(torch.cuda, "_register_triton_kernels", None)
    if register is not None:
        register()


#: modules of ADOPTED_PACKAGES that this server's children imported, for the server to import before its next fork
_LEARNED: set[str] = set()
#: those whose import failed here: not tried again
_REFUSED: set[str] = set()
_NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def _adopt(names: set[str]) -> None:
    """Import the torch, Triton and kernel modules earlier children imported (pure Python, by name), so the next child
    inherits them: which ones a run needs depends on the GPU and the library versions (on the H200, the first
    Triton kernel call of a child imported 45 of them, 0.28 s). A module whose import fails is left to the
    children and not tried again.
    Should an import initialise CUDA after all, this server can no longer fork usable children: it exits, and Ray
    retries the run on a fresh one."""
    import torch

    todo = sorted(names - set(sys.modules) - _REFUSED)
    if not todo:
        return
    # a module that asks torch.cuda.is_available() at import would start the CUDA driver here (children forked
    # after that cannot use the GPU) unless torch answers from NVML, which it does under this variable
    saved = os.environ.get(_NVML_CHECK)
    os.environ[_NVML_CHECK] = "1"
    try:
        for name in todo:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001  (the child imports it again, as it did before)
                _REFUSED.add(name)
    finally:
        if saved is None:
            del os.environ[_NVML_CHECK]
        else:
            os.environ[_NVML_CHECK] = saved
    if torch.cuda.is_initialized():
        os._exit(1)


def _new_adoptable_modules(inherited: set[str]) -> list[str]:
    """The pure-Python modules of ADOPTED_PACKAGES imported since `inherited` was taken."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name not in inherited
        and name.partition(".")[0] in ADOPTED_PACKAGES
        and str(getattr(getattr(module, "__spec__", None), "origin", "")).endswith(".py")
    )


def _child(config: dict[str, Any], git: dict[str, Any], fd: int, server: int) -> None:
    """The forked run: never returns. Exit 0 after its outcome went through the pipe, 1 otherwise."""
    code = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server:  # the server died before the line above
            os._exit(1)
        inherited = set(sys.modules)
        with os.fdopen(fd, "wb") as pipe:
            outcome = run_job(config, git, lambda rows: _send(pipe, ("metrics", rows)))
            _send(pipe, ("outcome", outcome))
            _send(pipe, ("imported", _new_adoptable_modules(inherited)))
        code = 0
    except BaseException:  # the jobs classify their own failures: anything here is a crash
        traceback.print_exc()
    finally:
        os._exit(code)


def _send(pipe, message: tuple[str, Any]) -> None:
    data = pickle.dumps(message)
    pipe.write(_HEADER.pack(len(data)) + data)
    pipe.flush()


def _relay(fd: int, run_id: str | None, metrics) -> tuple[dict[str, Any] | None, list[str]]:
    """Read the child's messages until it closes the pipe: forward metrics to the driver's queue, return
    the outcome (None when the child ended without one) and the modules the child imported."""
    outcome, imported = None, []
    with os.fdopen(fd, "rb") as pipe:
        while header := pipe.read(_HEADER.size):
            kind, payload = pickle.loads(pipe.read(_HEADER.unpack(header)[0]))
            if kind == "outcome":
                outcome = payload
            elif kind == "imported":
                imported = payload
            elif metrics is not None:
                metrics.put((run_id, payload))
    return outcome, imported


def _node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
