"""`execution: graph` on a real GPU: the replayed step computes what the eager one does, for every family,
with the Triton kernels inside the graph, at N of several BK-Core segments; the peak includes the pool."""

from __future__ import annotations

import pytest
import torch

from orchestrator.measure import BenchmarkJob, run_benchmark
from orchestrator.spec import resolve_config
from orchestrator.train import run_training

pytestmark = pytest.mark.gpu
TINY = {
    "vocab_size": 512,
    "d_model": 128,
    "n_layers": 2,
    "n_heads": 2,
    "device": "cuda",
    "seq_len": 300,
    "precision": "fp32",
    "steps": 3,
    "warmup_steps": 1,
}
FAMILIES = [
    ("transformer", {}),
    ("phase7-seed", {"causal": True}),
    ("phase8-seed", {"causal": True}),
    ("phase7", {}),
    ("phase8", {"entailment": True, "homology": True, "sheaf": True}),
    ("phase8", {"lin_attn_geometry": "euclidean", "grad_checkpoint": True, "loss_chunk_tokens": 128}),
]


def job_model_ids(name, knobs, mode, seed=0, execution="graph"):
    config, _ = resolve_config(TINY | knobs | {"model": name, "mode": mode, "execution": execution, "seed": seed})
    job = BenchmarkJob(config)
    job.prepare_device()
    model = job.build()
    model.train(mode != "inference")
    ids = torch.randint(0, 512, (2, 300), generator=torch.Generator().manual_seed(1)).cuda()
    return job, model, ids


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name, knobs", FAMILIES)
def test_replayed_inference_equals_eager(name, knobs):
    job, model, ids = job_model_ids(name, knobs, "inference")
    eager = job.step(model, ids, None).clone()
    replay = job.measured_step(model, ids, None)
    torch.testing.assert_close(replay(), eager, rtol=1e-5, atol=1e-5)
    first = replay().clone()
    assert torch.equal(replay(), first)  # replays are deterministic


def assert_replay_is_eager(job, model, eager_model, ids):
    """The replayed training step of `model` gives the loss and gradients of one eager step of `eager_model`
    (the same model, or an eager twin of the same initialisation)."""
    eager_loss = job.step(eager_model, ids, None).clone()
    eager_grads = grads(eager_model)
    replay = job.measured_step(model, ids, None)
    torch.testing.assert_close(replay(), eager_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads(model), eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, knobs", FAMILIES)
def test_replayed_loss_and_gradients_equal_eager(name, knobs):
    job, model, ids = job_model_ids(name, knobs, "train_no_optim")
    assert_replay_is_eager(job, model, model, ids)


@pytest.mark.parametrize("name", ["transformer", "phase7", "phase8"])
def test_compiled_and_captured_step_gives_eager_loss_and_gradients(name):
    """`compile_graph`: the compiled blocks (compiled in the eager warm-up) replayed inside one captured step."""
    job, model, ids = job_model_ids(name, {}, "train_no_optim", execution="compile_graph")
    assert all(block._compiled_call_impl is not None for block in model.blocks)
    _, eager_model, _ = job_model_ids(name, {}, "train_no_optim", execution="eager")
    assert_replay_is_eager(job, model, eager_model, ids)


@pytest.mark.parametrize("name", ["transformer", "phase7", "phase8"])
def test_replayed_adamw_steps_train_like_eager_ones(name):
    """The same number of AdamW updates, eager and replayed from one captured step, from one initialisation."""
    eager_job, eager_model, ids = job_model_ids(name, {}, "train")
    graph_job, graph_model, _ = job_model_ids(name, {}, "train")
    eager_opt, graph_opt = eager_job.make_optimizer(eager_model), graph_job.make_optimizer(graph_model)
    for job, model, opt in ((eager_job, eager_model, eager_opt), (graph_job, graph_model, graph_opt)):
        job.step(model, ids, opt)  # AdamW's state, created before any capture
    replay = graph_job.measured_step(graph_model, ids, graph_opt)  # 2 warm-up updates, capture, 1 replay
    for _ in range(3):
        graph_loss = replay()
    for _ in range(2 + 1 + 3):
        eager_loss = eager_job.step(eager_model, ids, eager_opt)
    torch.testing.assert_close(graph_loss, eager_loss, rtol=1e-4, atol=1e-5)
    for got, want in zip(graph_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["inference", "train"])
@pytest.mark.parametrize("name", ["phase7", "phase8"])
def test_graph_runs_are_stored_ok_and_their_peak_includes_the_graph_pool(name, mode):
    results = {}
    for execution in ("eager", "graph"):
        config, _ = resolve_config(TINY | {"model": name, "mode": mode, "execution": execution})
        results[execution] = run_benchmark(config)
        assert results[execution]["status"] == "ok", results[execution]["error"]
    eager, graph = results["eager"], results["graph"]
    assert graph["peak_bytes"] >= 0.9 * eager["peak_bytes"]  # the capture's allocations are counted
    assert graph["activation_bytes"] > 0 and graph["tokens_per_s"] > 0
    assert graph["loss"] is None or abs(graph["loss"] - eager["loss"]) < 0.5


@pytest.mark.parametrize(
    "name, knobs",
    [
        ("transformer", {}),
        ("phase7", {"grad_checkpoint": True}),
        ("phase8", {"loss_chunk_tokens": 128}),
    ],
)
def test_graph_training_follows_the_eager_curve(name, knobs):
    """`job: train` on real text, two micro-batches per step, clipping on: the replayed steps (after two
    warm-up steps and the capture) give the eager run's losses, gradient norms and validation loss."""
    curves = {}
    for execution in ("eager", "graph"):
        rows = []
        config, _ = resolve_config(
            TINY
            | knobs
            | {
                "model": name,
                "job": "train",
                "execution": execution,
                "seq_len": 128,
                "batch_size": 4,
                "tokens_per_step": 1024,
                "steps": 8,
                "lr": 3e-3,
                "lr_warmup_steps": 2,
                "eval_every": 4,
                "eval_tokens": 4096,
                "vocab_size": 256,
                "grad_clip": 0.5,
            }
        )
        result = run_training(config, rows.extend)
        assert result["status"] == "ok", result["error"]
        curves[execution] = rows
    for kind, key in (("train", "loss"), ("train", "grad_norm"), ("eval", "val_loss")):
        eager = [r[key] for r in curves["eager"] if r["kind"] == kind]
        graph = [r[key] for r in curves["graph"] if r["kind"] == kind]
        assert len(graph) == len(eager) > 1
        assert graph == pytest.approx(eager, rel=1e-4, abs=1e-6), key
