"""Triton causal_linear_attn under the Triton interpreter (CPU): outputs and q/k/v gradients.

TRITON_INTERPRET is read when kernels.linear_attn.triton is imported (at @triton.jit time): it is set
before that import.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from causality import LENGTHS, assert_exactly_causal  # noqa: E402

import kernels.linear_attn.triton as la_triton  # noqa: E402
from kernels.backend import backend  # noqa: E402
from kernels.linear_attn import causal_linear_attn, causal_linear_attn_quadratic  # noqa: E402
from kernels.linear_attn.triton import causal_linear_attn_triton  # noqa: E402


def _inputs(n, dk, dv, seed, dtype=torch.float32, heads=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, heads, n, d, generator=g).to(dtype) for d in (dk, dk, dv)]


def _output_and_grads(q, k, v, w, **kw):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    o = causal_linear_attn_triton(q, k, v, **kw)
    return [o, *torch.autograd.grad((o * w).sum(), (q, k, v))]


@pytest.mark.parametrize("backward", ["sequential", "chunked"])
@pytest.mark.parametrize("n", [1, 7, 63, 130])
@pytest.mark.parametrize("chunk", [16, 32, 64])
@pytest.mark.parametrize("dk,dv", [(5, 3), (16, 80)])
def test_triton_matches_quadratic(n, chunk, dk, dv, backward):
    q, k, v = (t.requires_grad_() for t in _inputs(n, dk, dv, seed=n + dv))
    w = torch.randn(2, 2, n, dv, generator=torch.Generator().manual_seed(1))
    o = causal_linear_attn_triton(q, k, v, chunk_size=chunk, backward=backward)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    o_ref = causal_linear_attn_quadratic(q64, k64, v64)
    torch.testing.assert_close(o.double(), o_ref, rtol=1e-4, atol=1e-4)
    g = torch.autograd.grad((o * w).sum(), (q, k, v))
    g_ref = torch.autograd.grad((o_ref * w.double()).sum(), (q64, k64, v64))
    for a, b in zip(g, g_ref, strict=False):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,chunk,dk,dv", [(130, 16, 16, 80), (97, 32, 5, 3), (200, 64, 24, 72)])
def test_chunked_backward_matches_sequential(n, chunk, dk, dv):
    # the same per-chunk products from the same states: equal up to float32 rounding
    q, k, v = _inputs(n, dk, dv, seed=7)
    w = torch.randn(2, 2, n, dv, generator=torch.Generator().manual_seed(2))
    seq = _output_and_grads(q, k, v, w, chunk_size=chunk, backward="sequential")
    chunked = _output_and_grads(q, k, v, w, chunk_size=chunk, backward="chunked")
    for a, b in zip(chunked, seq, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _assert_matches_quadratic(q, k, v, w, **kw):
    got = _output_and_grads(q, k, v, w, **kw)
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    o_ref = causal_linear_attn_quadratic(q64, k64, v64)
    ref = [o_ref, *torch.autograd.grad((o_ref * w.double()).sum(), (q64, k64, v64))]
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


def _small_chunked_tiles(q, v, chunk_size):
    """_chunked_cfg with tiles of 16 and a backward chunk of 16 whatever the forward's: the dq/dk kernel
    splits keys over its grid and loops over value tiles, the dv kernel splits values and loops over key
    tiles (the state pass keeps the full key width, as it must)."""
    dk, dv = q.shape[-1], v.shape[-1]
    tile = dict(DK=dk, DV=dv, BT=16, BK=16, BV=16, PREC="ieee")
    states = dict(tile, BK=max(16, 1 << (dk - 1).bit_length()))
    opts = dict(num_warps=4, num_stages=2)
    return {
        "_la_bwd_states_kernel": (states, opts),
        "_la_bwd_chunk_kernel": (tile, opts),
        "_la_bwd_chunk_dv_kernel": (tile, opts),
    }


@pytest.mark.parametrize("dk,dv", [(40, 24), (32, 48)])
def test_chunked_backward_split_tiles_match_quadratic(monkeypatch, dk, dv):
    # ragged last key and value tiles (40, 24), then exact ones (32, 48); 53 rows: 4 backward chunks of
    # 16, the last one ragged, under a forward chunk of 32
    monkeypatch.setattr(la_triton, "_chunked_cfg", _small_chunked_tiles)
    q, k, v = _inputs(53, dk, dv, seed=11, heads=1)
    w = torch.randn(2, 1, 53, dv, generator=torch.Generator().manual_seed(5))
    _assert_matches_quadratic(q, k, v, w, chunk_size=32, backward="chunked")


def test_chunked_backward_launcher_tiles_at_head_dim_128():
    # the launcher's own tiles at the benchmark's head dim: four key blocks in the dq/dk grid, four value
    # tiles of 32 in its loop, two state value blocks (one in 16-bit dtypes); 37 rows = 3 chunks of 16, the
    # last ragged
    meta = torch.empty(1, 128, device="meta")
    tiles = la_triton._chunked_cfg(meta, meta, 16)
    assert tiles["_la_bwd_chunk_kernel"][0]["BK"] == 32 and tiles["_la_bwd_chunk_kernel"][0]["BV"] == 32
    assert tiles["_la_bwd_states_kernel"][0]["BV"] == 64
    assert la_triton._chunked_cfg(meta.bfloat16(), meta.bfloat16(), 16)["_la_bwd_states_kernel"][0]["BV"] == 128
    q, k, v = _inputs(37, 128, 128, seed=12, heads=1)
    w = torch.randn(2, 1, 37, 128, generator=torch.Generator().manual_seed(6))
    _assert_matches_quadratic(q, k, v, w, chunk_size=16, backward="chunked")


def test_chunked_backward_16_bit_tiles_at_head_dim_128(monkeypatch):
    # the tiles bf16 and fp16 inputs get (one state program of 128 x 128 per direction), on float32 inputs
    # with float32 dots: the interpreter's exact path
    cfg = la_triton._chunked_cfg

    def bf16_tiles(q, v, chunk_size):
        tiles = cfg(q.to(torch.bfloat16), v.to(torch.bfloat16), chunk_size)
        return {name: (consts | {"PREC": "ieee"}, launch) for name, (consts, launch) in tiles.items()}

    monkeypatch.setattr(la_triton, "_chunked_cfg", bf16_tiles)
    assert la_triton._chunked_cfg(torch.empty(1, 128), torch.empty(1, 128), 16)["_la_bwd_states_kernel"][0]["BV"] == 128
    q, k, v = _inputs(37, 128, 128, seed=13, heads=1)
    w = torch.randn(2, 1, 37, 128, generator=torch.Generator().manual_seed(7))
    _assert_matches_quadratic(q, k, v, w, chunk_size=16, backward="chunked")


def test_launch_plan_lists_every_kernel():
    # what a compile-only register/spill probe reads: every kernel of the module, as launched
    q = torch.empty(1, 1, 1, 64, dtype=torch.bfloat16, device="meta")
    plan = {fn.__name__: (consts, opts) for fn, consts, opts in la_triton._launch_plan(q, q, 64)}
    kernels = {n for n in dir(la_triton) if n.startswith("_la_") and n.endswith("_kernel")}
    assert set(plan) == kernels | {"_row_dot_kernel"} and len(kernels) == 6  # dden: kernels/row_dot.py
    for name, tiles in la_triton._chunked_cfg(q, q, 64).items():
        assert plan[name] == tiles


@pytest.mark.parametrize("n", LENGTHS)
def test_triton_is_exactly_causal_across_chunks(n):
    q, k, v = _inputs(n, 5, 3, seed=n)
    assert_exactly_causal(lambda *x: causal_linear_attn_triton(*x, chunk_size=16), [q, k, v], chunk=16)


def test_unknown_backward_is_refused():
    q, k, v = _inputs(4, 8, 8, seed=0)
    with pytest.raises(ValueError, match="backward"):
        causal_linear_attn_triton(q, k, v, backward="bogus")


def test_triton_eps_and_dispatch():
    q, k, v = _inputs(40, 8, 8, seed=3)
    with backend("triton"):
        o = causal_linear_attn(q, k, v, eps=0.5, chunk_size=16)
    torch.testing.assert_close(
        o.double(), causal_linear_attn_quadratic(q.double(), k.double(), v.double(), eps=0.5), rtol=1e-4, atol=1e-4
    )


def test_triton_fp16_inputs():
    # (the interpreter's tl.dot mishandles bfloat16 operands; bf16 is covered by the GPU tests)
    q, k, v = (t.requires_grad_() for t in _inputs(50, 16, 16, seed=4, dtype=torch.float16))
    o = causal_linear_attn_triton(q, k, v, chunk_size=16)
    assert o.dtype == torch.float16
    ref = causal_linear_attn_quadratic(q.double(), k.double(), v.double())
    torch.testing.assert_close(o.double(), ref, rtol=1e-2, atol=1e-2)
    o.float().sum().backward()
    assert q.grad.dtype == torch.float16 and torch.isfinite(q.grad.float()).all()
    grads = [t.grad for t in (q, k, v)]
    chunked = _output_and_grads(q, k, v, torch.ones_like(o), chunk_size=16, backward="chunked")
    for a, b in zip(chunked, [o, *grads], strict=False):
        assert a.dtype == torch.float16
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("head_dim, kernel_calls", [(128, 1), (160, 0)])
def test_heads_above_the_tile_limit_take_the_reference(monkeypatch, head_dim, kernel_calls):
    calls = []
    kernel = la_triton.causal_linear_attn_triton
    monkeypatch.setattr(la_triton, "causal_linear_attn_triton", lambda *a, **kw: calls.append(1) or kernel(*a, **kw))
    q, k, v = _inputs(5, head_dim, head_dim, seed=6)
    with backend("triton"):
        o = causal_linear_attn(q, k, v, chunk_size=16)
    assert len(calls) == kernel_calls
    torch.testing.assert_close(
        o.double(), causal_linear_attn_quadratic(q.double(), k.double(), v.double()), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("backward", ["sequential", "chunked"])
def test_forward_op_opcheck(backward):
    # N=20 spans two chunks of 16; q, k, v require grad so the registered autograd formula is exercised
    q, k, v = (t.requires_grad_() for t in _inputs(20, 5, 3, seed=8, heads=1))
    torch.library.opcheck(la_triton._la_fwd_op, (q, k, v, 1e-6, 16, backward))


@pytest.mark.parametrize("backward", ["sequential", "chunked"])
def test_backward_op_opcheck(backward):
    # the backward op has no autograd of its own (no double backward): inputs do not require grad
    q, k, v = _inputs(20, 5, 3, seed=9, heads=1)
    o, den = la_triton._la_fwd_op(q, k, v, 1e-6, 16, backward)
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(3))
    torch.library.opcheck(la_triton._la_bwd_op, (q, k, v, do, o, den, 16, backward))


@pytest.mark.parametrize("backward", ["sequential", "chunked"])
def test_compiled_fullgraph_matches_eager(backward):
    torch._dynamo.reset()
    compiled = torch.compile(causal_linear_attn_triton, fullgraph=True, backend="aot_eager")
    # the second length recompiles with a dynamic N (symbolic shapes through the fake impls)
    for n in (70, 45):
        q, k, v = _inputs(n, 5, 3, seed=n, heads=1)
        w = torch.randn(2, 1, n, 3, generator=torch.Generator().manual_seed(4))
        eager = _output_and_grads(q, k, v, w, chunk_size=16, backward=backward)
        qc, kc, vc = (t.detach().clone().requires_grad_() for t in (q, k, v))
        o = compiled(qc, kc, vc, chunk_size=16, backward=backward)
        got = [o, *torch.autograd.grad((o * w).sum(), (qc, kc, vc))]
        for a, b in zip(got, eager, strict=False):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
