"""The worker runs each config's job under the kernel backend the config names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernels.backend import current_backend
from orchestrator import worker
from orchestrator.spec import expand

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "vocab_size": 64,
    "d_model": 32,
    "n_layers": 1,
    "n_heads": 2,
    "device": "cpu",
    "seq_len": 16,
    "warmup_steps": 0,
    "steps": 1,
}


@pytest.fixture(autouse=True)
def environment_backend(monkeypatch):
    monkeypatch.setenv("PHASEBENCH_KERNELS", "auto")


def config(kernels):
    data = {"name": "w", "defaults": TINY | {"kernels": kernels}, "grid": {"model": ["phase7"]}}
    return expand(data).runs[0].config


def test_each_run_takes_its_own_backend_and_it_does_not_outlive_the_run(monkeypatch):
    """A reused worker runs one job after another: each run's `kernels` holds for that run alone."""
    from orchestrator.measure import BenchmarkJob

    seen = []
    original = BenchmarkJob._run
    monkeypatch.setattr(BenchmarkJob, "_run", lambda job: (seen.append(current_backend()), original(job))[1])
    git = {"git_commit": None, "git_dirty": None}
    assert worker.execute(config("torch"), git)["status"] == "ok"
    assert current_backend() == "auto"  # the environment's choice again
    assert worker.execute(config("auto"), git)["status"] == "ok"
    assert seen == ["torch", "auto"]


def test_a_config_stored_before_the_newer_run_fields_runs_at_their_defaults():
    """`--resume` hands the worker configs as they were stored: older ones lack later run fields."""
    old = {k: v for k, v in config("torch").items() if k not in ("kernels", "execution", "loss_chunk_tokens")}
    old["compile"] = False  # the field execution replaced
    result = worker.execute(old, {"git_commit": None, "git_dirty": None})
    assert result["status"] == "ok", result.get("error")
    assert current_backend() == "auto"


SCHEMES = ("fork", "process")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_a_forked_run_measures_the_memory_a_fresh_process_does(local_ray, sqlite_url, monkeypatch, device):
    """The fork server saves the imports, not the isolation: the model's memory numbers are the same."""
    from orchestrator import api

    case = TINY | {"model": "phase7", "mode": "train", "seq_len": 64, "device": device}
    for scheme in SCHEMES:
        monkeypatch.setenv(worker.ISOLATION_ENV, scheme)
        api.run({"name": scheme, "defaults": case, "grid": {"seed": [0]}}, db=sqlite_url, rerun=True)
    rows = {row["batch"]: row for row in api.results(db=sqlite_url)}
    fork, process = rows["fork"], rows["process"]
    assert (fork["extra"]["isolation"], process["extra"]["isolation"]) == SCHEMES
    assert fork["extra"]["worker_pid"] != fork["extra"]["fork_server_pid"]  # the run had a process of its own
    for field in ("static_bytes", "weights_bytes", "activation_bytes", "peak_bytes", "saved_tensor_bytes"):
        assert fork[field] == process[field], field
    # the peak RSS counts the process too: a forked child has not touched the library pages it never uses
    assert 0.5 * process["peak_rss_bytes"] < fork["peak_rss_bytes"] <= 1.05 * process["peak_rss_bytes"]


def test_an_unknown_isolation_scheme_is_refused_before_anything_is_stored(sqlite_url, tmp_path, monkeypatch):
    from orchestrator import api
    from orchestrator.errors import UserError

    monkeypatch.setenv(worker.ISOLATION_ENV, "thread")
    with pytest.raises(UserError, match="PHASEBENCH_ISOLATION: must be fork or process"):
        api.run({"name": "x", "defaults": TINY | {"model": "phase7"}, "grid": {"seed": [0]}}, db=sqlite_url)
    assert not (tmp_path / "pb.db").exists()  # nothing was stored


def python_lines(tmp_path: Path, source: str, **env: str) -> list[str]:
    """Run `source` as a script in a fresh Python (the repository and tmp_path importable, `env` added); its
    stdout lines, after asserting that it exited 0."""
    script = tmp_path / "script.py"
    script.write_text(source)
    env = os.environ | {"PYTHONPATH": f"{ROOT}:{tmp_path}"} | env
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_a_forked_child_finds_torch_and_triton_ready(tmp_path):
    """A custom op's first call imports torch._dynamo (seconds on a GPU machine) and Triton hashes its own
    sources before it loads any kernel: the fork server of a GPU run does both once, so a child calling our kernels
    imports no torch module of its own and inherits Triton's hash. It also registers torch's own Triton ops,
    which CUDA init would otherwise register in every child."""
    lines = python_lines(
        tmp_path,
        "import sys, torch\n"
        "from orchestrator import worker\n"
        "worker._warm_up({'device': 'cuda', 'execution': 'eager'})\n"
        "print(worker._triton_key().cache_info().currsize)\n"
        "print(sorted(op for op, _ in torch._TritonLibrary.ops_table))\n"
        "before = {m for m in sys.modules if m.startswith('torch')}\n"
        "from kernels.rmsnorm.triton import rms_norm_triton\n"
        "rms_norm_triton(torch.randn(4, 8), torch.ones(8), 1e-6)\n"
        "print(sorted({m for m in sys.modules if m.startswith('torch')} - before))\n",
        TRITON_INTERPRET="1",
    )
    assert lines == [
        "1",
        "['_triton_bsr_dense_addmm_out', '_triton_bsr_dense_mm_out']",
        "[]",
    ]


def test_a_cpu_runs_fork_server_skips_what_only_gpu_runs_need(tmp_path):
    """torch._dynamo (~2 s of CPU) and Triton's hash serve runs on a GPU: the server of an eager CPU run
    takes on neither, that of a compiled CPU run imports dynamo only."""
    lines = python_lines(
        tmp_path,
        "import sys\n"
        "from orchestrator import worker\n"
        "for execution in ('eager', 'compile'):\n"
        "    worker._warm_up({'device': 'cpu', 'execution': execution})\n"
        "    print(execution, 'torch._dynamo' in sys.modules, worker._triton_key().cache_info().currsize)\n",
    )
    assert lines == ["eager False 0", "compile True 0"]


def test_the_fork_server_imports_what_its_children_imported(tmp_path):
    """A module of torch or Triton that a forked run imported is imported by the server before its next fork,
    so later children inherit it; other modules (the standard library's, a user's) are not. A module that fails
    to import in the server is tried once, then left to the children. While the server imports, torch answers
    `cuda.is_available()` from NVML, which does not start the CUDA driver in a process that forks."""
    package = tmp_path / "adoptable"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "boom.py").write_text(
        "import os, sys\n"
        f"open({str(tmp_path / 'attempts')!r}, 'a').write(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK', '-'))\n"
        "if not getattr(sys, 'in_child', False):\n"
        "    raise ImportError('only a child can import this')\n"
    )
    lines = python_lines(
        tmp_path,
        "import importlib, sys\n"
        "from orchestrator import worker\n"
        "worker.ADOPTED_PACKAGES += ('adoptable',)\n"
        "def job(config, git, emit):\n"
        "    sys.in_child = True\n"
        "    for name in config['imports']:\n"
        "        importlib.import_module(name)\n"
        "    return {'status': 'ok', 'extra': {}}\n"
        "worker.run_job = job\n"
        "names = ['torch.utils.show_pickle', 'xml.dom.minidom', 'adoptable.boom']\n"
        "config = {'device': 'cpu', 'execution': 'eager', 'imports': names}\n"
        "worker.execute_forked(config, {})\n"
        "print([n in sys.modules for n in names], sorted(worker._LEARNED))\n"
        "for _ in range(2):\n"
        "    outcome = worker.execute_forked(config, {})\n"
        "    print([n in sys.modules for n in names], sorted(worker._REFUSED), outcome['status'])\n",
    )
    assert lines == [
        "[False, False, False] ['adoptable', 'adoptable.boom', 'torch.utils.show_pickle']",
        "[True, False, False] ['adoptable.boom'] ok",
        "[True, False, False] ['adoptable.boom'] ok",
    ]
    # each child imported it (3), the server tried once, with torch's CUDA check on NVML (fork-safe) meanwhile
    assert (tmp_path / "attempts").read_text() == "-1--"
