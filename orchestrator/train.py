"""The training job: a model trained on real text, every step and evaluation streamed out as it happens.

Fused AdamW (weight decay on matrices only), linear warm-up then cosine decay to `min_lr_ratio * lr`,
gradient clipping, gradient accumulation up to `tokens_per_step`, evaluation every `eval_every` steps on
a fixed validation slice, checkpoints (atomic) every `checkpoint_every` steps and at the end, resumed
automatically when the same computation (see :func:`orchestrator.spec.checkpoint_key`) finds one. An
optimizer step whose loss or gradient norm is not finite is not applied and stops the run with status
`nonfinite`; the weights stay finite and the metrics so far are kept. The step itself
(:class:`TrainStep`) never waits for the device, so `execution: graph` replays it from a CUDA graph.
"""

from __future__ import annotations

import math
import os
import pickle
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models.base import lm_loss

from .data import TokenLoader, load_corpus, unigram_entropy, validation_batches
from .execution import GraphedStep
from .measure import Job, NonFinite, peak_rss_bytes
from .spec import captures, checkpoint_key

Emit = Callable[[list[dict[str, Any]]], None]
FLUSH_S = 0.5


def lr_at(step: int, run: dict[str, Any]) -> float:
    """Learning rate of optimizer step `step` (1-based): linear warm-up, then cosine to min_lr_ratio * lr."""
    lr, warmup, total = run["lr"], run["lr_warmup_steps"], run["steps"]
    if warmup and step <= warmup:
        return lr * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = run["min_lr_ratio"] * lr
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices (dim >= 2), none on biases, norms, scalars."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    plain = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


class MetricBuffer:
    """Collects metric rows and hands them to `emit` at most every FLUSH_S seconds (and on flush())."""

    def __init__(self, emit: Emit | None):
        self.emit, self.last = emit, time.monotonic()
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if time.monotonic() - self.last >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self.emit is not None and self.rows:
            self.emit(self.rows)
        self.rows, self.last = [], time.monotonic()


class Checkpoint:
    """model + optimizer + loader + step, saved atomically under `folder/<checkpoint key>/`."""

    def __init__(self, folder: str, config: dict[str, Any]):
        self.path = Path(folder) / checkpoint_key(config) / "checkpoint.pt"

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def load(self, device: torch.device) -> dict[str, Any]:
        """The saved state. Tensors and plain containers only (`weights_only`): a file that would run code
        when unpickled is refused, never executed."""
        try:
            return torch.load(self.path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"checkpoint {self.path} holds more than tensors and plain data, refused: {first}"
            ) from None


class TrainStep:
    """One optimizer step over `accum` micro-batches held in static device buffers, which :meth:`load`
    refills by copy: forward, loss, backward, gradient clipping, fused AdamW. The learning rate is a
    device tensor and a step whose loss or gradient norm is not finite is skipped by the optimizer itself
    (its `found_inf`), so nothing in a call waits for the device. Returns (mean loss, gradient norm before
    clipping) as 0-d device tensors."""

    def __init__(self, job: Job, model: torch.nn.Module, optimizer: torch.optim.AdamW, accum: int):
        run, device = job.run, job.device
        self.job, self.model, self.optimizer = job, model, optimizer
        self.inputs = torch.zeros((accum, run["batch_size"], run["seq_len"]), dtype=torch.long, device=device)
        self.targets = torch.zeros_like(self.inputs)
        self.lr = torch.tensor(float(run["lr"]), device=device)
        for group in optimizer.param_groups:
            group["lr"] = self.lr
        self.found_inf = torch.zeros((), device=device)  # read by the fused step: 1.0 skips it
        # torch's fused AdamW reads `found_inf` off the optimizer (as GradScaler sets it); AdamW does not declare it
        optimizer.found_inf = self.found_inf  # type: ignore[attr-defined]
        self.clip = run["grad_clip"] or math.inf

    def load(self, loader: TokenLoader, lr: float) -> None:
        """The next `accum` micro-batches and this step's learning rate, copied into the static buffers."""
        for i in range(self.inputs.shape[0]):
            x, y = next(loader)
            self.inputs[i].copy_(x)
            self.targets[i].copy_(y)
        self.lr.fill_(lr)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        tracker, accum = self.job.tracker, self.inputs.shape[0]
        self.model.zero_grad(set_to_none=True)  # a captured backward allocates them in the graph's pool
        total = torch.zeros((), device=self.inputs.device)
        for x, y in zip(self.inputs, self.targets, strict=False):
            tracker.stage = "forward"
            loss = self.job.loss(self.model, x, y) / accum
            tracker.stage = "backward"
            loss.backward()
            total = total + loss.detach()
        tracker.stage = "step"
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.found_inf.copy_((~torch.isfinite(total + grad_norm)).float())
        self.optimizer.step()
        return total, grad_norm


class TrainJob(Job):
    """Train one configuration; `emit(rows)` receives metric rows while the run goes on."""

    def __init__(self, config: dict[str, Any], emit: Emit | None = None):
        super().__init__(config)
        self.config = config
        self.buffer = MetricBuffer(emit)

    def execute(self) -> dict[str, Any]:
        try:
            return super().execute()
        finally:
            self.buffer.flush()

    def _run(self) -> None:
        run, m = self.run, self.result.metrics
        self.prepare_device()
        corpus = load_corpus(run["data"], run["tokenizer"], run["seed"], run["val_fraction"])
        model = self.build()
        m["params"] = sum(p.numel() for p in model.parameters())
        m["weights_bytes"] = (
            self.allocated()
            if self.device.type == "cuda"
            else sum(p.numel() * p.element_size() for p in model.parameters())
        )
        model.train()
        optimizer = self.make_optimizer(model)
        loader = TokenLoader(corpus.train, run["seq_len"], run["batch_size"], run["seed"])
        val = validation_batches(corpus.val, run["seq_len"], run["batch_size"], run["eval_tokens"])
        micro_tokens = run["batch_size"] * run["seq_len"]
        accum = max(1, run["tokens_per_step"] // micro_tokens)
        checkpoint = Checkpoint(run["checkpoint_dir"], self.config) if run["checkpoint_dir"] else None
        start, tokens, elapsed = 0, 0, 0.0
        if checkpoint is not None and checkpoint.exists():
            state = checkpoint.load(self.device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            loader.load_state_dict(state["loader"])
            start, tokens, elapsed = state["step"], state["tokens"], state["elapsed_s"]
        train_step = TrainStep(self, model, optimizer, accum)
        run_step = GraphedStep(train_step, self.device) if captures(run["execution"]) else train_step
        self.buffer.add({"kind": "restart", "step": start})  # a retried attempt replaces what came after
        self.buffer.flush()
        m["extra"] = {
            "resumed_from_step": start,
            "accumulation": accum,
            "unigram_entropy": unigram_entropy(corpus.val),
            "tokenizer": run["tokenizer"],
            "bytes_per_token": corpus.bytes_per_token,
        }
        times, last_loss, last_eval = [], None, None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        for step in range(start + 1, run["steps"] + 1):
            began = time.perf_counter()
            lr = lr_at(step, run)
            train_step.load(loader, lr)
            loss, norm = run_step()
            last_loss, grad_norm = loss.item(), norm.item()  # waits for the step
            seconds = time.perf_counter() - began
            times.append(seconds)
            tokens += accum * micro_tokens
            elapsed += seconds
            self.buffer.add(
                {
                    "kind": "train",
                    "step": step,
                    "tokens": tokens,
                    "elapsed_s": elapsed,
                    "loss": last_loss if math.isfinite(last_loss) else None,
                    "lr": lr,
                    "grad_norm": grad_norm if math.isfinite(grad_norm) else None,
                    "tokens_per_s": accum * micro_tokens / seconds,
                    "step_time_s": seconds,
                    "peak_bytes": self.peak_allocated(),
                }
            )
            if not (math.isfinite(last_loss) and math.isfinite(grad_norm)):
                raise NonFinite("step")  # the step was skipped: the weights (and any checkpoint) stay finite
            if (run["eval_every"] and step % run["eval_every"] == 0) or step == run["steps"]:
                last_eval = self.evaluate(model, val, step, tokens, elapsed, corpus.bytes_per_token)
            if checkpoint is not None and (
                (run["checkpoint_every"] and step % run["checkpoint_every"] == 0) or step == run["steps"]
            ):
                checkpoint.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "loader": loader.state_dict(),
                        "step": step,
                        "tokens": tokens,
                        "elapsed_s": elapsed,
                    }
                )
            if run["fault"] == "exit_mid" and start == 0 and step == run["steps"] // 2:
                self.buffer.flush()
                os._exit(1)  # injected crash halfway; the retried task resumes from the last checkpoint
        self.summarise(times, accum * micro_tokens, last_loss, last_eval, tokens)

    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.AdamW:
        """Fused AdamW (capturable under `execution: graph`: its step counters live on the device)."""
        return torch.optim.AdamW(
            param_groups(model, self.run["weight_decay"]),
            lr=self.run["lr"],
            betas=(0.9, 0.95),
            fused=True,
            capturable=captures(self.run["execution"]),
        )

    @torch.no_grad()
    def evaluate(self, model, batches, step: int, tokens: int, elapsed: float, bytes_per_token: float) -> dict:
        """Mean next-token loss over the fixed validation slice (auxiliary losses left out)."""
        model.eval()
        self.tracker.stage = "forward"
        losses = []
        for x, y in batches:
            with self.autocast():
                loss = lm_loss(model, x.to(self.device), y.to(self.device), self.run["loss_chunk_tokens"])
            losses.append(loss.item())
        model.train()
        val_loss = statistics.fmean(losses)
        row = {
            "kind": "eval",
            "step": step,
            "tokens": tokens,
            "elapsed_s": elapsed,
            "val_loss": val_loss,
            "bits_per_byte": val_loss / math.log(2) / bytes_per_token,
            "perplexity": math.exp(min(val_loss, 700.0)),
        }
        self.buffer.add(row)
        return row

    def summarise(
        self, times: list[float], step_tokens: int, last_loss: float | None, last_eval: dict | None, tokens: int
    ) -> None:
        m = self.result.metrics
        steady = times[1:] or times  # the first step pays for lazy initialisation
        if steady:
            median = statistics.median(steady)
            q = statistics.quantiles(steady, n=4) if len(steady) >= 2 else [median] * 3
            m["step_time_median_s"], m["step_time_iqr_s"] = median, q[2] - q[0]
            m["tokens_per_s"] = step_tokens / median
            m["flops_per_token"], m["mfu"] = self.mfu(m["tokens_per_s"], "train")
        m["peak_bytes"] = self.peak_allocated()
        m["peak_rss_bytes"] = peak_rss_bytes()
        m["loss"] = last_loss
        m["extra"].update(
            tokens_seen=tokens,
            **({k: last_eval[k] for k in ("val_loss", "bits_per_byte", "perplexity")} if last_eval else {}),
        )


def run_training(config: dict[str, Any], emit: Emit | None = None) -> dict[str, Any]:
    """Train one resolved `job: train` config; see :class:`TrainJob`."""
    return TrainJob(config, emit).execute()
