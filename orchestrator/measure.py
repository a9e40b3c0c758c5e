"""The benchmark job: build one configuration, run it in its mode, measure memory and time.

Follows docs/measurement.md. Runs inside a fresh worker process (Ray task, max_calls=1). Returns a plain
dict: `status` (ok | oom | failed | nonfinite), `stage` (build | forward | backward | step | done) and
the metrics named like :class:`orchestrator.store.schema.Result`'s columns.
"""

from __future__ import annotations

import contextlib
import functools
import math
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

import models
from kernels.backend import backend
from models.base import lm_loss

from .execution import GraphedStep
from .spec import PHASEBENCH_FIELDS, RUN_FIELD_TYPES, TRAIN_FIELD_TYPES, captures, compiles

#: dense bf16/fp16 tensor-core peak FLOP/s by GPU name fragment (vendor datasheets)
PEAK_FLOPS_16BIT = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 3080": 119e12}
PURE_DTYPES = {"pure_fp16": torch.float16, "pure_bf16": torch.bfloat16}
AMP_DTYPES = {"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}


class StageTracker:
    """Remembers the stage a run is in, so an OOM can say where it died."""

    def __init__(self) -> None:
        self.stage = "build"


@dataclass
class Measurement:
    status: str = "ok"
    stage: str = "done"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "stage": self.stage, "error": self.error, **self.metrics}


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run fields, model knobs) of a resolved config."""
    run = {k: v for k, v in config.items() if k in RUN_FIELD_TYPES or k in TRAIN_FIELD_TYPES or k in PHASEBENCH_FIELDS}
    knobs = {k: v for k, v in config.items() if k not in run}
    return run, knobs


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )


def peak_flops(gpu_name: str | None, precision: str) -> float | None:
    """Peak FLOP/s for MFU: the dense 16-bit tensor-core figure (fp32 runs use half of it, TF32)."""
    if not gpu_name:
        return None
    for fragment, flops in PEAK_FLOPS_16BIT.items():
        if fragment in gpu_name:
            return flops / 2 if precision == "fp32" else flops
    return None


class SavedTensorCounter:
    """Counts bytes saved for backward (unique storages, the `exclude`d ones, e.g. parameters, left
    out) while its hooks are active."""

    def __init__(self, exclude=()) -> None:
        self.storages: dict[int, int] = {}
        self.excluded = {t.untyped_storage().data_ptr() for t in exclude}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device.type != "meta":
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in self.excluded:
                self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def nbytes(self) -> int:
        return sum(self.storages.values())

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)


def all_finite(x: torch.Tensor, rows: int = 64) -> bool:
    """True when every value is finite; checked in chunks so that the check allocates almost nothing
    (a full-size bool copy of the logits would be charged to the measured peak)."""
    return all(bool(torch.isfinite(chunk).all()) for chunk in x.split(rows, dim=1))


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class Job:
    """What every job shares: the config split into run fields and model knobs, the device, the model
    built in its precision, autocast, failures classified into result statuses.

    Subclasses implement :meth:`_run`, filling `self.result.metrics`; :meth:`execute` never raises.
    """

    def __init__(self, config: dict[str, Any]):
        self.run, knobs = split_config(config)
        self.entry = models.get(self.run["model"])
        self.model_config = self.entry.make_config(knobs)
        self.device = resolve_device(self.run["device"])
        self.precision = self.model_config.precision
        self.tracker = StageTracker()
        self.result = Measurement()
        self.baseline = 0

    def execute(self) -> dict[str, Any]:
        with self.kernel_backend():
            try:
                self._run()
            except Exception as exc:  # every failure is a result row, never a lost run
                self.result.status = classify_failure(exc)
                self.result.stage = self.tracker.stage
                self.result.error = f"{type(exc).__name__}: {exc}"[:4000]
                if self.result.status == "failed":
                    self.result.metrics["traceback"] = traceback.format_exc()[-8000:]
                self._record_peak_after_failure()
        return self.result.as_dict()

    def kernel_backend(self) -> AbstractContextManager[None]:
        return kernel_backend(self.run)

    def _run(self) -> None:
        raise NotImplementedError

    def _record_peak_after_failure(self) -> None:
        m = self.result.metrics
        if self.device.type == "cuda":
            m["peak_bytes"] = torch.cuda.max_memory_allocated(self.device) - self.baseline
        m["peak_rss_bytes"] = peak_rss_bytes()

    # -- memory ---------------------------------------------------------------------------------
    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device) - self.baseline if self.device.type == "cuda" else 0

    def peak_allocated(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device) - self.baseline if self.device.type == "cuda" else None

    def prepare_device(self) -> None:
        """Seed, device, VRAM cap (the kernel backend is :meth:`kernel_backend`'s block)."""
        torch.manual_seed(self.run["seed"])
        if self.device.type != "cuda":
            return
        torch.cuda.set_device(self.device)
        budget = self.run["vram_budget_gb"]
        if budget:
            total = torch.cuda.get_device_properties(self.device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, budget * 2**30 / total), self.device)
        warm_up_math(self.device, math_dtypes(self.precision))
        torch.cuda.synchronize()
        self.baseline = torch.cuda.memory_allocated(self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- model ----------------------------------------------------------------------------------
    def autocast(self):
        if self.precision in AMP_DTYPES:
            return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.precision])
        return contextlib.nullcontext()

    def build(self):
        """The model built directly on the device in its storage dtype (no fp32 copy on the way)."""
        self.tracker.stage = "build"
        dtype = PURE_DTYPES.get(self.precision, torch.float32)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with self.device:
                model = self.entry.build(self.model_config)
        finally:
            torch.set_default_dtype(previous)
        model = model.to(dtype=dtype)
        if compiles(self.run["execution"]):
            # in place: identical blocks share one compiled graph; a user model without blocks is one graph
            for part in getattr(model, "blocks", None) or [model]:
                part.compile()
        return model

    def loss(self, model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy (fp32) plus the model's auxiliary losses. inputs, targets: (B, N)."""
        with self.autocast():
            loss = lm_loss(model, inputs, targets, self.run["loss_chunk_tokens"])
            aux = getattr(model, "aux_loss", None)
            if aux is not None:
                model.aux_loss = None  # taken: the model keeps no graph past its step
                loss = loss + aux
        return loss

    def mfu(self, tokens_per_s: float, mode: str) -> tuple[float | None, float | None]:
        """(FLOPs per token, model FLOPs utilisation), each None where unknown (a user family whose FLOPs
        cannot be counted; a GPU whose peak is not listed)."""
        flops = self.entry.flops_per_token(self.model_config, self.run["seq_len"], mode)
        gpu = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        peak = peak_flops(gpu, self.precision)
        return flops, (flops * tokens_per_s / peak if peak and flops is not None else None)


class BenchmarkJob(Job):
    """One configuration's benchmark (see module docstring)."""

    def step(self, model, ids, optimizer) -> torch.Tensor:
        """One measured step -> the logits (inference) or the detached loss (training), left on the device:
        nothing here waits for the GPU. A training step sets the gradients to None first, so that a captured
        step allocates them in the graph's pool and every replay writes them afresh."""
        mode = self.run["mode"]
        self.tracker.stage = "forward"
        if mode == "inference":
            with torch.no_grad(), self.autocast():
                return model(ids)
        model.zero_grad(set_to_none=True)
        loss = self.loss(model, ids[:, :-1], ids[:, 1:])
        self.tracker.stage = "backward"
        loss.backward()
        if optimizer is not None:
            self.tracker.stage = "step"
            optimizer.step()
        return loss.detach()

    def measured_step(self, model, ids, optimizer) -> Callable[[], torch.Tensor]:
        """The step a run times: :meth:`step`, or under a capturing `execution` its replay, warmed up and captured
        here (so that a peak taken from here on includes the graph's pool)."""
        step = functools.partial(self.step, model, ids, optimizer)
        if not captures(self.run["execution"]):
            return step
        graphed = GraphedStep(step, self.device)
        while not graphed.captured:
            graphed()
        return graphed

    def make_optimizer(self, model):
        if self.run["mode"] != "train":
            return None
        fused = self.device.type == "cuda"
        capturable = captures(self.run["execution"])
        return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, capturable=capturable)

    # -- the protocol ---------------------------------------------------------------------------
    def _run(self) -> None:
        m = self.result.metrics
        run = self.run
        self.prepare_device()
        model = self.build()
        m["params"] = models.count_params(model)
        m["weights_bytes"] = self.allocated() if self.device.type == "cuda" else tensor_bytes(model.parameters())
        model.train(run["mode"] != "inference")
        optimizer = self.make_optimizer(model)
        generator = torch.Generator().manual_seed(run["seed"])
        self.tracker.stage = "forward"
        if run["fault"] == "raise":
            raise RuntimeError("injected fault (fault: raise)")
        before_input = self.allocated()
        ids = torch.randint(
            0, self.model_config.vocab_size, (run["batch_size"], run["seq_len"]), generator=generator
        ).to(self.device)
        input_bytes = self.allocated() - before_input  # the step's input is not static state
        if optimizer is not None:  # AdamW creates its state lazily: one full step first
            self.check_finite(self.step(model, ids, optimizer))
            model.zero_grad(set_to_none=True)  # static state: weights and optimizer state, not the step's gradients
        self.synchronize()
        m["static_bytes"] = self.static_bytes(model, optimizer) - input_bytes
        for _ in range(run["warmup_steps"]):
            self.check_finite(self.step(model, ids, optimizer))
        self.synchronize()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        times, out = self.timed_steps(self.measured_step(model, ids, optimizer))
        final = self.output_value(out)  # the finiteness check, outside the timed steps
        del out
        model.zero_grad(set_to_none=True)
        self.record_memory(m)
        retained = self.allocated() - m["static_bytes"]  # what the steps left allocated (workspaces, caches)
        m["saved_tensor_bytes"] = self.count_saved_bytes(model, ids)
        logits_dtype = half_dtype(self.precision) or torch.float32
        m["logits_bytes"] = run["batch_size"] * run["seq_len"] * self.model_config.vocab_size * logits_dtype.itemsize
        if self.device.type != "cuda":
            m["activation_bytes"] = m["saved_tensor_bytes"]
        self.record_speed(m, times)
        m["loss"] = final if run["mode"] != "inference" else None
        m["extra"] = {
            "sdpa_backends": sorted(self.sdpa_backends(model)),
            "step_times_s": times,
            "retained_after_steps_bytes": retained if self.device.type == "cuda" else None,
            "gradient_bytes": self.gradient_bytes(model),
            "activation_source": "allocator" if self.device.type == "cuda" else "saved_tensors",
        }
        if not math.isfinite(final):
            self.result.status, self.result.stage = "nonfinite", "done"

    def output_value(self, out: torch.Tensor) -> float:
        """A step's output as a number: the loss (training), or 0.0 when every logit is finite (inference);
        NaN when not finite."""
        if self.run["mode"] == "inference":
            return 0.0 if all_finite(out) else math.nan
        return out.item()

    def check_finite(self, out: torch.Tensor) -> None:
        if not math.isfinite(self.output_value(out)):
            raise NonFinite(self.tracker.stage)

    def timed_steps(self, step: Callable[[], torch.Tensor]) -> tuple[list[float], torch.Tensor]:
        """Run the measured steps, each timed between two synchronisations -> (seconds, last output). The
        previous output is released before the next step allocates its own."""
        times: list[float] = []
        out: torch.Tensor | None = None
        for _ in range(self.run["repeats"] * self.run["steps"]):
            out = None
            self.synchronize()
            start = time.perf_counter()
            out = step()
            self.synchronize()
            times.append(time.perf_counter() - start)
        assert out is not None, "repeats and steps are validated to be at least 1"
        return times, out

    def static_bytes(self, model, optimizer) -> int:
        if self.device.type == "cuda":
            return self.allocated()
        state = (
            [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
            if optimizer is not None
            else []
        )
        return tensor_bytes(model.parameters()) + tensor_bytes(state)

    def record_memory(self, m: dict[str, Any]) -> None:
        m["peak_rss_bytes"] = peak_rss_bytes()
        if self.device.type != "cuda":
            return
        stats = torch.cuda.memory_stats(self.device)
        m["peak_bytes"] = self.peak_allocated()
        m["reserved_bytes"] = torch.cuda.max_memory_reserved(self.device)
        free, total = torch.cuda.mem_get_info(self.device)
        m["device_used_bytes"] = total - free
        m["alloc_retries"] = stats.get("num_alloc_retries", 0)
        m["num_ooms"] = stats.get("num_ooms", 0)
        base = m["static_bytes"] if self.run["mode"] == "train" else m["weights_bytes"]
        m["activation_bytes"] = m["peak_bytes"] - base

    def gradient_bytes(self, model) -> int:
        """Bytes the parameter gradients take in the training modes (part of peak - static there)."""
        if self.run["mode"] == "inference":
            return 0
        return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)

    def count_saved_bytes(self, model, ids) -> int:
        """Activation bytes saved for backward by one forward, parameters excluded (0 in inference:
        nothing is saved under no_grad)."""
        if self.run["mode"] == "inference":
            return 0
        counter = SavedTensorCounter(exclude=model.parameters())
        with counter.hooks(), self.autocast():
            logits = model(ids)
        del logits
        model.zero_grad(set_to_none=True)
        return counter.nbytes

    def record_speed(self, m: dict[str, Any], times: list[float]) -> None:
        median = statistics.median(times)
        q = statistics.quantiles(times, n=4) if len(times) >= 2 else [median, median, median]
        m["step_time_median_s"] = median
        m["step_time_iqr_s"] = q[2] - q[0]
        tokens = self.run["batch_size"] * self.run["seq_len"]
        m["tokens_per_s"] = tokens / median
        m["flops_per_token"], m["mfu"] = self.mfu(m["tokens_per_s"], self.run["mode"])

    @staticmethod
    def sdpa_backends(model) -> set[str]:
        return {mod.backend_used for mod in model.modules() if getattr(mod, "backend_used", None)}


def half_dtype(precision: str) -> torch.dtype | None:
    """A precision's 16-bit dtype (its storage dtype, or its autocast dtype); None for fp32."""
    return PURE_DTYPES.get(precision) or AMP_DTYPES.get(precision)


def math_dtypes(precision: str) -> tuple[torch.dtype, ...]:
    """The dtypes of a run's matrix products: float32 (every run has some) and its 16-bit dtype, if any."""
    half = half_dtype(precision)
    return (torch.float32,) if half is None else (torch.float32, half)


def warm_up_math(device: torch.device, dtypes: tuple[torch.dtype, ...]) -> None:
    """Create the cuBLAS/cuBLASLt handles and workspaces, and load the product kernels of `dtypes`, before the
    baseline is taken, so that nothing lazily allocated is charged to the model (docs/measurement.md, protocol
    step 1). The workspaces do not depend on the dtype (`tests/orchestrator/test_measure_gpu.py`), so a run
    warms only the dtypes it uses."""
    for dtype in dtypes:
        a = torch.ones(256, 256, device=device, dtype=dtype)
        bias = torch.ones(256, device=device, dtype=dtype)
        (a @ a).sum().item()
        F.linear(a, a, bias).sum().item()
        torch.bmm(a[None], a[None]).sum().item()


def resolve_device(name: str) -> torch.device:
    """`cuda` -> the current CUDA device with its index (Ray sets CUDA_VISIBLE_DEVICES per task)."""
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


class NonFinite(Exception):
    """A loss or output that is not finite."""

    def __init__(self, stage: str):
        super().__init__(f"non-finite value in {stage}")
        self.stage = stage


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def classify_failure(exc: BaseException) -> str:
    if isinstance(exc, NonFinite):
        return "nonfinite"
    return "oom" if is_oom(exc) else "failed"


def kernel_backend(config: dict[str, Any]) -> AbstractContextManager[None]:
    """A run's kernel backend (`kernels`; `auto`: the environment's choice) for a `with` block."""
    return backend(None if config["kernels"] == "auto" else config["kernels"])


def run_benchmark(config: dict[str, Any]) -> dict[str, Any]:
    """Measure one resolved config; see :class:`BenchmarkJob`."""
    return BenchmarkJob(config).execute()
