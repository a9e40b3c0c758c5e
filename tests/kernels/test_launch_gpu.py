"""kernels/launch.py on CUDA: after the JIT's first launch of a specialisation the compiled kernel is launched
directly, with correct results across alignments, integer values, constexprs and runtime values; a launch hook
sees direct launches; launches are captured in CUDA graphs; BK-Core's outputs and gradients are bit for bit the
JIT's (skipped without a GPU)."""

import pytest
import torch
import triton
import triton.language as tl
from gpu_marks import GPU_ONLY

from kernels import launch as L

pytestmark = GPU_ONLY


@triton.jit
def _axpb(X, Y, n, a, B: tl.constexpr, BLOCK: tl.constexpr = 16):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(Y + i, tl.load(X + i, mask=m) * a + B, mask=m)


def _jit_runs(kernel, monkeypatch) -> list:
    """The list gets an entry each time `kernel` goes through the JIT."""
    runs: list = []
    run = kernel.run
    monkeypatch.setattr(kernel, "run", lambda *a, **k: (runs.append(1), run(*a, **k))[1])
    return runs


def _launch(x, n, a=2.0, B=3):
    y = torch.full_like(x, -1.0)
    L.launch(_axpb, (triton.cdiv(n, 16),), x, y, n, a, B=B)
    return y


@pytest.mark.skipif(not L.DIRECT, reason=f"triton {triton.__version__}: launches take the JIT's path")
def test_direct_launches_follow_every_specialisation(monkeypatch):
    runs = _jit_runs(_axpb, monkeypatch)
    x = torch.arange(64, device="cuda", dtype=torch.float32)
    # (input, n, a, B, JIT runs after the launch): repeats launch directly, and so does a 16-byte offset; a new n or
    # a (keyed by value), a 4-byte offset and another constexpr each go through the JIT once
    cases = [(x, 37, 2.0, 3, 1), (x, 37, 2.0, 3, 1), (x, 40, 0.5, 3, 2), (x[1:], 37, 2.0, 3, 3), (x[1:], 37, 2.0, 3, 3)]
    cases += [(x[4:], 37, 2.0, 3, 3), (x, 16, 2.0, 3, 4), (x, 1, 2.0, 3, 5), (x, 37, 2.0, 5, 6), (x, 37, 2.0, 5, 6)]
    cases += [(x, 40, 0.5, 3, 6)]
    for inp, n, a, B, expected_runs in cases:
        y = _launch(inp, n, a, B)
        torch.cuda.synchronize()
        assert torch.equal(y[:n], inp[:n] * a + B), (n, a, B, inp.data_ptr() % 16)
        assert torch.equal(y[n:], torch.full_like(y[n:], -1.0))
        assert len(runs) == expected_runs, (n, a, B, inp.data_ptr() % 16)


@pytest.mark.skipif(not L.DIRECT, reason=f"triton {triton.__version__}: launches take the JIT's path")
def test_a_launch_hook_sees_direct_launches(monkeypatch):
    runs = _jit_runs(_axpb, monkeypatch)
    x = torch.arange(64, device="cuda", dtype=torch.float32)
    _launch(x, 29)
    seen: list = []
    hooks = L.knobs.runtime.launch_enter_hook
    hooks.add(seen.append)
    try:
        y = _launch(x, 29)
    finally:
        hooks.remove(seen.append)
    torch.cuda.synchronize()
    assert torch.equal(y[:29], x[:29] * 2 + 3) and len(runs) == 1
    assert len(seen) == 1 and seen[0].get()["name"] == "_axpb"
    _launch(x, 29)
    assert len(seen) == 1  # the hook is gone: the launcher is called without it


def test_launches_replay_from_a_cuda_graph():
    x = torch.arange(64, device="cuda", dtype=torch.float32)
    y = torch.empty_like(x)
    for _ in range(2):  # the JIT's launch, then (where DIRECT) the direct one
        L.launch(_axpb, (4,), x, y, 64, 2.0, B=3)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        L.launch(_axpb, (4,), x, y, 64, 2.0, B=3)
    x.copy_(torch.randn(64, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(y, x * 2 + 3)


def _bk_core_outputs_and_grads():
    from kernels.bk_core.triton import bk_core_triton

    g = torch.Generator(device="cuda").manual_seed(0)
    v = torch.randn(2, 1000, 64, device="cuda", generator=g).requires_grad_()
    h0 = (torch.randn(64, device="cuda", generator=g) * 0.1).requires_grad_()
    beta = (torch.rand(64, device="cuda", generator=g) + 0.5).requires_grad_()
    z_re = torch.zeros(64, device="cuda").requires_grad_()
    z_im = (torch.rand(64, device="cuda", generator=g) + 0.5).requires_grad_()
    args = (v, h0, beta, z_re, z_im)
    outs = []
    for _ in range(2):  # the second call launches directly where DIRECT
        g_re, g_im = bk_core_triton(*args)
        torch.autograd.backward((g_re, g_im), (torch.ones_like(g_re), torch.full_like(g_im, 0.5)))
        outs.append([g_re.detach(), g_im.detach()] + [t.grad for t in args])
        for t in args:
            t.grad = None
    return outs


@pytest.mark.skipif(not L.DIRECT, reason=f"triton {triton.__version__}: launches take the JIT's path")
def test_bk_core_launched_directly_is_bit_for_bit_the_jits(monkeypatch):
    from kernels.bk_core import triton as T

    monkeypatch.setattr(L, "DIRECT", False)
    jit = _bk_core_outputs_and_grads()
    monkeypatch.setattr(L, "DIRECT", True)
    L._plans.clear()
    direct = _bk_core_outputs_and_grads()
    for got in (*jit, *direct):
        for a, b in zip(jit[0], got, strict=True):
            assert torch.equal(a, b)
    launched = (T._halo_sweep_kernel, T._seg_map_kernel, T._sweep_kernel, T._halo_adj_kernel, T._adj_sweep_kernel)
    assert all(L._plans[k][3] for k in launched)
