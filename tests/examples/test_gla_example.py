"""examples/custom_model/gla.py, the worked user family: the chunked form is the recurrence, the model is
causal, registration counts it right, and it learns."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import models
from models import registry
from orchestrator import user_code

GLA_PATH = Path(__file__).resolve().parents[2] / "examples" / "custom_model" / "gla.py"
TINY = {"vocab_size": 256, "d_model": 32, "n_layers": 2, "n_heads": 4, "grad_checkpoint": False}


@pytest.fixture(scope="module")
def gla():
    """The example module, imported once into a copy of the registry: its `gla` neither collides with nor
    leaks into the registry other tests see. One thread: intra-op threads only wait on a small CPU."""
    models.names()  # the built-in families first
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items() if k != "gla"})
        spec = importlib.util.spec_from_file_location("phasebench_example_gla", GLA_PATH)
        module = importlib.util.module_from_spec(spec)
        patch.setitem(sys.modules, spec.name, module)  # dataclasses resolve the module by name
        spec.loader.exec_module(module)
        code = user_code.UserCode(GLA_PATH, user_code.source_digest(GLA_PATH), shipped=False)
        patch.setitem(user_code._CODE, spec.name, code)  # as `imports:` would have recorded it
        yield module
    torch.set_num_threads(threads)


def qkv_gates(b, h, n, dk, dv, seed=0):
    """Random q, k, v and log-gates (some strongly forgetting) in float64."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, h, n, dk, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, h, n, dv, generator=gen, dtype=torch.float64)
    log_alpha = F.logsigmoid(3 * torch.randn(b, h, n, dk, generator=gen, dtype=torch.float64))
    return q, k, v, log_alpha


@pytest.mark.parametrize("n", [1, 7, 33, 100])
@pytest.mark.parametrize("chunk, sub", [(8, 16), (16, 4), (32, 16)])
def test_chunked_form_is_the_recurrence(gla, n, chunk, sub):
    q, k, v, log_alpha = qkv_gates(2, 3, n, 5, 4)
    out = gla.gla_chunked(q, k, v, log_alpha, chunk, sub)
    torch.testing.assert_close(out, gla.gla_recurrent_ref(q, k, v, log_alpha), rtol=1e-10, atol=1e-10)


def test_chunked_form_is_stable_where_a_chunk_forgets_everything(gla):
    """A chunk's total log-gate far below float32's exp range: the result is still the recurrence."""
    q, k, v, _ = qkv_gates(1, 2, 50, 4, 4)
    log_alpha = torch.full_like(q, -20.0)
    out = gla.gla_chunked(*(x.float() for x in (q, k, v, log_alpha)), 32)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), gla.gla_recurrent_ref(q, k, v, log_alpha), rtol=1e-4, atol=1e-5)


def test_chunked_form_gradients(gla):
    inputs = [x.requires_grad_() for x in qkv_gates(1, 2, 11, 3, 2)]
    assert torch.autograd.gradcheck(lambda *xs: gla.gla_chunked(*xs, 8, 4), inputs)


def test_model_is_causal(gla):
    config = gla.GLAConfig.from_dict({**TINY, "chunk_size": 16})
    torch.manual_seed(0)
    model = gla.build_gla(config).double().eval()
    ids = torch.randint(0, 256, (2, 41))
    with torch.no_grad():
        ref = model(ids)
        for t in (0, 14, 15, 16, 30):
            changed = ids.clone()
            changed[:, t + 1] = (changed[:, t + 1] + 1) % 256
            out = model(changed)
            assert torch.equal(out[:, : t + 1], ref[:, : t + 1]), t
            assert not torch.equal(out[:, t + 1], ref[:, t + 1])


def test_family_is_registered_and_counted(gla):
    entry = models.get("gla")
    assert entry.config_cls is gla.GLAConfig and entry.build is gla.build_gla
    config = entry.make_config(TINY)
    assert entry.estimate_params(config) == models.count_params(gla.build_gla(config))
    assert entry.flops_per_token(config, 128, "inference") > 0
    with pytest.raises(models.ConfigError, match="expand_k"):
        entry.make_config({**TINY, "expand_k": 0.05})


def test_model_learns_a_repeated_sequence(gla):
    config = gla.GLAConfig.from_dict(TINY)
    torch.manual_seed(0)
    model = gla.build_gla(config)
    ids = torch.randint(0, 256, (1, 16)).repeat(2, 4)  # (2, 64): one 16-token phrase, four times
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "device, execution",
    [
        ("cpu", "compile"),
        pytest.param("cuda", "graph", marks=pytest.mark.gpu),
        pytest.param("cuda", "compile_graph", marks=pytest.mark.gpu),
    ],
)
def test_the_family_runs_in_every_execution_mode_like_eager(gla, device, execution):
    """A user family under the orchestrator's execution modes: the step's loss and gradients equal eager's
    (compiled blocks; on a GPU the captured step replayed), at a length of several chunks."""
    from orchestrator.measure import BenchmarkJob
    from orchestrator.spec import resolve_config

    base = TINY | {"model": "gla", "n_layers": 1, "chunk_size": 16, "seq_len": 70, "device": device}
    base |= {"mode": "train_no_optim"}
    results = {}
    for mode in ("eager", execution):
        config, _ = resolve_config(base | {"execution": mode, "precision": "fp32"})
        job = BenchmarkJob(config)
        job.prepare_device()
        model = job.build()
        ids = torch.randint(0, 256, (2, 71), generator=torch.Generator().manual_seed(0)).to(device)
        step = job.measured_step(model, ids, None)
        for _ in range(3):  # warm-up, capture, replay
            loss = step()
        results[mode] = loss.detach().clone(), [p.grad.clone() for p in model.parameters()]
    (eager_loss, eager_grads), (loss, grads) = results["eager"], results[execution]
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
