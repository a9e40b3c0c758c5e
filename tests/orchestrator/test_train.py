"""Training jobs end to end through a real local Ray on CPU: learning, streaming, resume, divergence."""

from __future__ import annotations

import copy
import math
import threading
import time

import pytest
import sqlalchemy as sa
import torch
from cli_helpers import run_cli
from sync_spy import SyncSpy

from orchestrator import api
from orchestrator.errors import ConfigError
from orchestrator.spec import expand, resolve_config
from orchestrator.store.repository import Store
from orchestrator.train import TrainJob, TrainStep, lr_at, param_groups

TINY = {
    "job": "train",
    "vocab_size": 256,
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 4,
    "seq_len": 64,
    "batch_size": 16,
    "precision": "fp32",
    "grad_checkpoint": False,
    "device": "cpu",
    "lr": 3e-3,
    "lr_warmup_steps": 20,
    "eval_tokens": 16384,
    "timeout_s": 600,
}


def spec(name, cases, **defaults):
    return {"name": name, "defaults": TINY | defaults, "cases": cases}


class MetricsWatcher(threading.Thread):
    """Polls the database while a batch runs: did metrics rows exist before the run's result row?"""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.engine, self.stop, self.seen_live = sa.create_engine(url), threading.Event(), 0

    def run(self):
        while not self.stop.is_set():
            try:
                with self.engine.connect() as conn:
                    live = conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pb_train_metrics m WHERE NOT EXISTS "
                            "(SELECT 1 FROM pb_results r WHERE r.run_id = m.run_id)"
                        )
                    ).scalar()
                self.seen_live = max(self.seen_live, live)
            except sa.exc.OperationalError:
                pass  # tables not created yet
            time.sleep(0.2)


def test_tiny_models_learn_and_metrics_stream_while_running(local_ray, sqlite_url):
    watcher = MetricsWatcher(sqlite_url)
    watcher.start()
    outcome = api.run(
        spec("learn", [{"model": "transformer"}, {"model": "phase8"}], steps=100, eval_every=25),
        db=sqlite_url,
        max_parallel=1,
    )
    watcher.stop.set()
    watcher.join()
    assert outcome.counts == {"ok": 2}
    assert watcher.seen_live > 0  # metrics were in the database before their run had finished
    store = Store(sqlite_url)
    for row in api.results(db=sqlite_url):
        extra = row["extra"]
        print(
            f"{row['model']}: validation loss {extra['val_loss']:.3f} nats vs unigram entropy "
            f"{extra['unigram_entropy']:.3f} nats ({row['params']:,} params)"
        )
        assert extra["val_loss"] < extra["unigram_entropy"] - 0.3
        assert 2.0 < extra["unigram_entropy"] < 6.0  # bytes of Python source
        assert extra["bits_per_byte"] == pytest.approx(extra["val_loss"] / 0.6931471805599453)
        curve = store.metrics(row["run_id"])
        train = [m for m in curve if m["kind"] == "train"]
        evals = [m for m in curve if m["kind"] == "eval"]
        assert [m["step"] for m in train] == list(range(1, 101))
        assert [m["step"] for m in evals] == [25, 50, 75, 100]
        assert train[-1]["tokens"] == 100 * 16 * 64 and train[0]["lr"] < train[25]["lr"]
        assert evals[-1]["val_loss"] < evals[0]["val_loss"]
        assert row["tokens_per_s"] > 0 and row["flops_per_token"] > 0
    store.close()


def test_crash_halfway_resumes_from_checkpoint_and_continues_the_curve(local_ray, sqlite_url, tmp_path):
    common = {"steps": 24, "eval_every": 0, "checkpoint_every": 4, "model": "transformer"}
    crashed = spec("crash", [common | {"fault": "exit_mid", "checkpoint_dir": str(tmp_path / "a")}])
    steady = spec("steady", [common | {"checkpoint_dir": str(tmp_path / "b")}])
    assert api.run(crashed, db=sqlite_url).counts == {"ok": 1}  # Ray retried the dead worker
    assert api.run(steady, db=sqlite_url).counts == {"ok": 1}
    rows = {r["batch"]: r for r in api.results(db=sqlite_url)}
    assert rows["crash"]["extra"]["resumed_from_step"] == 12 and rows["steady"]["extra"]["resumed_from_step"] == 0
    store = Store(sqlite_url)
    resumed = [m for m in store.metrics(rows["crash"]["run_id"]) if m["kind"] == "train"]
    straight = [m for m in store.metrics(rows["steady"]["run_id"]) if m["kind"] == "train"]
    store.close()
    assert [m["step"] for m in resumed] == list(range(1, 25))  # each step once, none lost or doubled
    for a, b in zip(resumed, straight, strict=False):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5)
        assert a["tokens"] == b["tokens"]


def test_divergent_run_is_nonfinite_and_keeps_its_metrics(local_ray, sqlite_url):
    outcome = api.run(
        spec("diverge", [{"model": "transformer", "lr": 1e3, "grad_clip": 0.0, "lr_warmup_steps": 0, "steps": 50}]),
        db=sqlite_url,
    )
    assert outcome.counts == {"nonfinite": 1}
    row = api.results(db=sqlite_url)[0]
    assert row["stage"] == "step" and "non-finite" in row["error"]
    store = Store(sqlite_url)
    curve = store.metrics(row["run_id"])
    store.close()
    assert curve and None in (curve[-1]["loss"], curve[-1]["grad_norm"])  # the step that stopped it
    assert all(m["loss"] is not None and m["grad_norm"] is not None for m in curve[:-1])


def test_curves_and_live_status(local_ray, sqlite_url, capsys):
    api.run(spec("curves", [{"model": "phase7", "steps": 6, "eval_every": 3}]), db=sqlite_url)
    run_id = api.results(db=sqlite_url)[0]["run_id"]
    code, out, _ = run_cli("results", "curves", run_id[:10], "--db", sqlite_url, "--format", "csv")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].startswith("kind,step,tokens")
    assert len(lines) == 1 + 6 + 2  # six steps, evaluations at steps 3 and 6
    code, out, _ = run_cli("status", "curves", "--db", sqlite_url)
    assert code == 0 and "train loss" in out and "  6  " in out


def test_learning_rate_schedule():
    run = {"lr": 1.0, "lr_warmup_steps": 10, "steps": 110, "min_lr_ratio": 0.1}
    assert lr_at(1, run) == pytest.approx(0.1) and lr_at(10, run) == pytest.approx(1.0)
    assert lr_at(60, run) == pytest.approx(0.55) and lr_at(110, run) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"tokenizer": "gpt2"}, "vocab_size: must be >= 50257 for tokenizer gpt2"),
        ({"tokens_per_step": 1000}, "tokens_per_step: must be a multiple of batch_size * seq_len = 1024"),
        ({"mode": "inference", "job": "benchmark", "lr": 0.1}, "lr: is a training field: set job: train"),
        ({"mode": "train_no_optim"}, "mode: must be train for job: train"),
    ],
)
def test_training_spec_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        expand(spec("bad", [{"model": "transformer"}], **override | {"batch_size": 16, "seq_len": 64}))


def test_exit_mid_fault_needs_a_training_job():
    benchmark = {k: v for k, v in TINY.items() if k not in ("job", "lr", "lr_warmup_steps", "eval_tokens")}
    with pytest.raises(ConfigError, match="fault: needs job: train"):
        expand({"name": "bad", "defaults": benchmark, "cases": [{"model": "transformer", "fault": "exit_mid"}]})


class _RunsCode:
    """Unpickling this calls print-to-file: what a planted checkpoint would do with weights_only=False."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_checkpoint_that_runs_code_is_refused_not_executed(tmp_path):
    import torch

    from orchestrator.train import Checkpoint

    config = expand(spec("ckpt", [{"model": "transformer", "checkpoint_dir": str(tmp_path)}])).runs[0].config
    checkpoint = Checkpoint(str(tmp_path), config)
    checkpoint.path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"model": _RunsCode(str(marker))}, checkpoint.path)
    with pytest.raises(ValueError, match="holds more than tensors and plain data, refused"):
        checkpoint.load(torch.device("cpu"))
    assert not marker.exists()
    checkpoint.save({"model": {"w": torch.ones(2)}, "step": 3, "loader": {"epoch": 0, "position": 1}})
    assert checkpoint.load(torch.device("cpu"))["step"] == 3  # a real checkpoint still loads


def train_step_for(name, accum, **knobs):
    """A tiny job's model and its TrainStep over `accum` micro-batches of 2 x 32 tokens (CPU)."""
    config, _ = resolve_config(
        TINY | {"model": name, "batch_size": 2, "seq_len": 32, "tokens_per_step": accum * 64} | knobs
    )
    job = TrainJob(config)
    job.prepare_device()
    model = job.build()
    model.train()
    return job, model, TrainStep(job, model, job.make_optimizer(model), accum)


def random_batches(seed=0):
    generator = torch.Generator().manual_seed(seed)
    while True:
        ids = torch.randint(0, 256, (2, 33), generator=generator)
        yield ids[:, :-1], ids[:, 1:]


@pytest.mark.parametrize(
    "name, knobs",
    [
        ("transformer", {}),
        ("phase7", {"grad_checkpoint": True}),
        ("phase8", {"loss_chunk_tokens": 16}),
    ],
)
def test_a_training_step_never_waits_for_the_device(name, knobs):
    """Accumulation, clipping, the non-finite skip and the AdamW step: what `execution: graph` captures."""
    _, _, step = train_step_for(name, accum=2, grad_clip=0.5, **knobs)
    step.load(random_batches(), 1e-3)
    with SyncSpy() as spy:
        step()
    assert spy.calls == []


def test_the_train_step_is_accumulated_clipped_adamw():
    """Two steps of TrainStep against plain PyTorch: mean loss over the micro-batches, clipped gradients,
    AdamW with the scheduled learning rate."""
    job, model, step = train_step_for("phase7", accum=3, grad_clip=0.1)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(param_groups(reference, job.run["weight_decay"]), lr=1.0, betas=(0.9, 0.95))
    ours, theirs = random_batches(1), random_batches(1)
    for lr in (2e-3, 1e-3):
        step.load(ours, lr)
        loss, grad_norm = step()
        total = 0.0
        for _ in range(3):
            x, y = next(theirs)
            micro = job.loss(reference, x, y) / 3
            micro.backward()
            total += micro.item()
        norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.1)
        optimizer.param_groups[0]["lr"] = optimizer.param_groups[1]["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        assert loss.item() == pytest.approx(total, rel=1e-5)
        assert grad_norm.item() == pytest.approx(norm.item(), rel=1e-5)
    for ours_p, theirs_p in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours_p, theirs_p, rtol=1e-5, atol=1e-6)


def test_a_step_with_non_finite_gradients_is_skipped_without_a_host_read():
    _, model, step = train_step_for("transformer", accum=1)
    batches = random_batches()
    step.load(batches, 1e-3)
    step()  # a real update: AdamW's state exists
    weights = [p.detach().clone() for p in model.parameters()]
    counts = [s["step"].clone() for s in step.optimizer.state.values()]
    poison = next(model.parameters()).register_hook(lambda g: g * math.nan)
    step.load(batches, 1e-3)
    loss, grad_norm = step()
    assert math.isfinite(loss.item()) and not math.isfinite(grad_norm.item())
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True))
    assert all(torch.equal(s["step"], c) for s, c in zip(step.optimizer.state.values(), counts, strict=True))
    poison.remove()
    step.load(batches, 1e-3)
    step()
    assert not torch.equal(next(model.parameters()), weights[0])
    assert all(s["step"].item() == c.item() + 1 for s, c in zip(step.optimizer.state.values(), counts, strict=True))


def test_graph_execution_is_accepted_for_training_on_cuda():
    config = expand(spec("graph-train", [{"model": "phase7"}], device="cuda", num_gpus=1.0, execution="graph")).runs[0]
    assert config.config["execution"] == "graph" and config.config["job"] == "train"


@pytest.mark.parametrize("fields", [{}, {"checkpoint_dir": "/tmp/x"}, {"checkpoint_every": 4}])
def test_exit_mid_fault_needs_checkpoints_to_resume_from(fields):
    with pytest.raises(ConfigError, match="fault: needs checkpoint_dir and checkpoint_every"):
        expand(spec("bad", [{"model": "transformer", "fault": "exit_mid"} | fields]))
