"""window_hyp_attn Triton kernel on CUDA at realistic shapes (skipped without a GPU)."""

import pytest
import torch
from gpu_marks import GPU_ONLY

pytestmark = GPU_ONLY


def _all(fn, ins, w):
    ins = [t.clone().requires_grad_() for t in ins]
    o = fn(*ins)
    return [o] + list(torch.autograd.grad((o.float() * w).sum(), ins))


def _inputs(b, h, n, d, seed, dtype=torch.float32):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k = (torch.randn(b, h, n, d, device="cuda", generator=g) * 0.7 / d**0.5 for _ in range(2))  # tangent norms ~0.7
    v = torch.randn(b, h, n, d, device="cuda", generator=g)
    c = torch.rand(h, device="cuda", generator=g) + 0.2
    s = torch.rand(h, device="cuda", generator=g) * 2 + 0.5
    return [q.to(dtype), k.to(dtype), v.to(dtype), c, s]


@pytest.mark.parametrize("n,window", [(130, 64), (4096, 64), (2048, 200)])
def test_window_fp32(n, window):
    from kernels.window_attn import window_hyp_attn_ref
    from kernels.window_attn.triton import window_hyp_attn_triton

    ins = _inputs(2, 4, n, 64, seed=n)
    w = torch.randn(2, 4, n, 64, device="cuda", generator=torch.Generator(device="cuda").manual_seed(3))
    got = _all(lambda *a: window_hyp_attn_triton(*a, window=window), ins, w)
    ref = _all(lambda *a: window_hyp_attn_ref(*a, window=window), [t.double() for t in ins], w.double())
    for name, a, b in zip(["o", "q", "k", "v", "c", "scale"], got, ref, strict=False):
        err = (a.double() - b).abs().max().item()
        assert err <= 2e-4 * max(1.0, b.abs().max().item()), (name, err)


@pytest.mark.parametrize("n, h, d", [(16384, 4, 64), (4096, 2, 128)])
def test_window_bf16(n, h, d):
    """bf16 at the model's head dim and the largest one, with the launchers' tiles for them (_cfg, _split_plan)."""
    from kernels.window_attn import window_hyp_attn_ref
    from kernels.window_attn.triton import window_hyp_attn_triton

    ins = _inputs(1, h, n, d, seed=1, dtype=torch.bfloat16)
    # a fixed cotangent: the c and scale gradients sum over all N * window pairs, and their error against
    # the float32 reference moved from 0.9e-2 to 9.3e-2 with an unseeded one (H200, same kernel)
    w = torch.randn(1, h, n, d, device="cuda", generator=torch.Generator(device="cuda").manual_seed(2))
    got = _all(lambda *a: window_hyp_attn_triton(*a, window=64), ins, w)
    ref = _all(lambda *a: window_hyp_attn_ref(*a, window=64), [t.float() for t in ins], w)
    assert got[0].dtype == torch.bfloat16
    # the kernel rounds the ball points exp0(q) to bf16 and takes <x, k> from bf16 operands, the reference
    # keeps the ball points in float32; the curvature/scale gradients sum that error over all N * window pairs
    # (observed on H200 at 16384 x 64, single-kernel backward: c 2.0e-2, scale 2.3e-2, the others below 5e-3)
    for name, a, b in zip(["o", "q", "k", "v", "c", "scale"], got, ref, strict=False):
        rel = ((a.float() - b.float()).norm() / b.float().norm()).item()
        assert rel < (5e-2 if name in ("c", "scale") else 3e-2), (name, rel)


def test_window_dispatch_on_cuda():
    from kernels.window_attn import window_hyp_attn, window_hyp_attn_ref

    q, k, v, c, s = _inputs(1, 2, 300, 32, seed=3)
    torch.testing.assert_close(
        window_hyp_attn(q, k, v, c, s, 64), window_hyp_attn_ref(q, k, v, c, s, 64), rtol=2e-4, atol=2e-4
    )


@pytest.mark.parametrize("b, h", [(4, 4), (1, 4)])
def test_window_backward_groups_on_two_streams_in_a_cuda_graph(monkeypatch, b, h):
    """The backward's groups (batch rows, or heads for one row) on alternating streams, eager (forced) and replayed
    from a CUDA graph that forks and joins the side stream: the gradients of one group (eager's own), bit for bit."""
    import kernels.window_attn.triton as wa

    x = [t.requires_grad_() for t in _inputs(b, h, 2048, 64, seed=5, dtype=torch.bfloat16)]
    w = torch.randn(b, h, 2048, 64, device="cuda", generator=torch.Generator(device="cuda").manual_seed(6))
    seen, groups, grouped = [], wa._groups, wa._grouped
    monkeypatch.setattr(wa, "_groups", lambda *a: seen.append(groups(*a)) or seen[-1])

    def grads():
        o = wa.window_hyp_attn_triton(*x, window=64)
        return torch.autograd.grad((o.float() * w).sum(), x)

    one = grads()
    monkeypatch.setattr(wa, "_grouped", lambda device: True)
    eager = grads()
    monkeypatch.setattr(wa, "_grouped", grouped)
    warm = torch.cuda.Stream()
    warm.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(warm):
        grads()
    torch.cuda.current_stream().wait_stream(warm)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = grads()
    assert [len(bounds) - 1 for _, bounds in seen] == [1, 2, 1, 2]  # eager, forced, warm-up, captured
    for t in captured:
        t.zero_()
    graph.replay()
    torch.cuda.synchronize()
    for name, a, e, c in zip("q k v c scale".split(), one, eager, captured, strict=True):
        assert torch.equal(a, e) and torch.equal(a, c), name
