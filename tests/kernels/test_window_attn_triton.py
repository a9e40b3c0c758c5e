"""Triton window_hyp_attn under the Triton interpreter (CPU): output and the gradients of q, k, v, c, scale.

TRITON_INTERPRET is read when kernels.window_attn.triton is imported (at @triton.jit time): it is set
before that import.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402

import kernels.window_attn.triton as wa_triton  # noqa: E402
from kernels.backend import backend  # noqa: E402
from kernels.poincare.naive import exp0  # noqa: E402
from kernels.window_attn import window_hyp_attn, window_hyp_attn_ref  # noqa: E402
from kernels.window_attn.triton import window_hyp_attn_triton  # noqa: E402


def _inputs(n, d=6, h=2, seed=0, scale=0.3, b=2):
    # tangent norms ~0.7/sqrt(c): away from the boundary, where float32 itself (the PyTorch reference
    # included) loses digits of 1 - c|x|^2
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=g) * s for s in (scale, scale, 1.0))
    c = torch.rand(h, generator=g) + 0.2
    s = torch.rand(h, generator=g) * 2 + 0.5
    return [q, k, v, c, s]


def _check(inputs, window, tol=1e-4, **kw):
    """The kernel (kw: block_m, block_n) against the float64 reference: output and every gradient."""
    ins = [t.clone().requires_grad_() for t in inputs]
    ins64 = [t.detach().double().requires_grad_() for t in inputs]
    o = window_hyp_attn_triton(*ins, window=window, **kw)
    o64 = window_hyp_attn_ref(*ins64, window=window)
    torch.testing.assert_close(o.double(), o64, rtol=tol, atol=tol)
    w = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
    g = torch.autograd.grad((o * w).sum(), ins)
    g64 = torch.autograd.grad((o64 * w.double()).sum(), ins64)
    for name, a, b in zip("q k v c scale".split(), g, g64, strict=False):
        assert a.shape == b.shape, name
        err = (a.double() - b).abs().max().item()
        assert err <= tol * max(1.0, b.abs().max().item()), (name, err)


@pytest.mark.parametrize("block_m, block_n", [(16, 16), (32, 16), (16, 32)])
@pytest.mark.parametrize("window", [1, 4, 64])
@pytest.mark.parametrize("n", [1, 7, 130])
def test_triton_matches_reference(n, window, block_m, block_n):
    # tiles: block_m queries x block_n keys, the forward's and both backward kernels'; more queries than keys,
    # fewer, as many. One batch row (the interpreter's time goes with the programs): the batch index is checked
    # by the launchers' tiles below
    _check(_inputs(n, seed=n + window, b=1), window, block_m=block_m, block_n=block_n)


@pytest.mark.parametrize("n, window", [(7, 4), (130, 64), (130, 33), (200, 100)])
def test_the_launchers_tiles_match_reference(n, window):
    # the launchers' own tiles for float32 at head dim 16 (32 x 32 everywhere), windows across several blocks
    _check(_inputs(n, seed=n + window + 2), window)


def test_16bit_keys_take_the_hardware_ratio():
    # float16 inputs (the interpreter's bfloat16 dots are not exact) map k by _key_rows' FAST ratio: tanh.approx
    # (here its closed form) above u = 0.1, kernels.poincare's series below it (one key); the forward and both
    # backward kernels against the float32 reference, within float16's rounding of x and k
    ins = _inputs(70, d=16)
    ins[1][0, 0, 3] *= 1e-3
    x = [t.half().requires_grad_() if i < 3 else t.clone().requires_grad_() for i, t in enumerate(ins)]
    ref = [t.detach().float().requires_grad_() for t in x]
    o, o32 = window_hyp_attn_triton(*x, window=8), window_hyp_attn_ref(*ref, window=8)
    assert o.dtype == torch.float16
    torch.testing.assert_close(o.float(), o32, rtol=0, atol=3e-3)
    w = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
    g, g32 = torch.autograd.grad((o.float() * w).sum(), x), torch.autograd.grad((o32 * w).sum(), ref)
    for name, a, b in zip("q k v c scale".split(), g, g32, strict=True):
        rel = ((a.float() - b).norm() / b.norm()).item()
        assert rel < (2e-2 if name in ("c", "scale") else 5e-3), (name, rel)


@pytest.mark.parametrize(
    "head_dim, fp32, n, window",
    [(64, False, 130, 33), (64, False, 200, 64), (128, False, 200, 64), (128, True, 200, 100)],
)
def test_the_backwards_other_tiles_match_reference(monkeypatch, head_dim, fp32, n, window):
    # the tiles the launcher takes for bf16 at head dim 64 (32 x 64, 64 x 32; window 64: the WIDE folds), at 128
    # (16 x 64, 64 x 32) and for float32 above 64 (16 x 32, 32 x 16): folds of unequal sides, here at head dim 6 in
    # float32
    tiles = wa_triton._split_tiles(head_dim, head_dim, fp32)
    monkeypatch.setattr(wa_triton, "_split_tiles", lambda BD, BDV, fp32, aligned: tiles)
    plan = list(wa_triton._split_plan(6, 6, torch.float32, window))
    assert tuple((consts["BQ"], consts["BK"]) for _, consts, _ in plan) == tiles
    _check(_inputs(n, seed=n + window + 3), window)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_epilogue_rows_by_the_identity_product_change_no_bit(monkeypatch, dtype):
    # _reload_rows: the epilogues' x, q and k tiles through a dot with the identity (16-bit inputs at head dims up
    # to 64 by default) give the plain reload's gradients bit for bit; odd length, tiles of 16 and 32 rows
    ins = [t.to(dtype) if i < 3 else t for i, t in enumerate(_inputs(45, d=16, seed=4))]
    grads = {}
    for by_dot in (False, True):
        monkeypatch.setattr(wa_triton, "_rows_by_dot", lambda BD, BDV, fp32, on=by_dot: on)
        x = [t.clone().requires_grad_() for t in ins]
        o = window_hyp_attn_triton(*x, window=8, block_m=32, block_n=16)
        grads[by_dot] = torch.autograd.grad(o.float().sum(), x)
    assert all(torch.equal(a, b) for a, b in zip(grads[False], grads[True], strict=True))


@pytest.mark.parametrize("version", [(3, 6), (3, 9)])
def test_16bit_tiles_reload_rows_by_the_identity_product_up_to_head_dim_128_before_triton_3_9(monkeypatch, version):
    monkeypatch.setattr(wa_triton, "TRITON_VERSION", version)
    plans = {
        (d, dtype): {consts["DOT_ROWS"] for _, consts, _ in wa_triton._split_plan(d, d, dtype, 64)}
        for d in (64, 128, 256)
        for dtype in (torch.bfloat16, torch.float16, torch.float32)
    }
    at_128 = version < (3, 9)  # triton 3.9 spills there with it (run 38 of results/kernels/runs.md)
    assert plans == {
        (64, torch.bfloat16): {True},
        (64, torch.float16): {True},
        (64, torch.float32): {False},
        (128, torch.bfloat16): {at_128},
        (128, torch.float16): {at_128},
        (128, torch.float32): {False},
        (256, torch.bfloat16): {False},
        (256, torch.float16): {False},
        (256, torch.float32): {False},
    }


def test_backward_is_deterministic():
    # each dx and dy row is stored once, by the program that owns it; no atomics
    ins = [t.requires_grad_() for t in _inputs(70, seed=9)]
    kw = dict(window=64, block_m=16, block_n=16)
    runs = [torch.autograd.grad(window_hyp_attn_triton(*ins, **kw).sum(), ins) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def test_the_backward_splits_batch_rows_or_else_heads(monkeypatch):
    monkeypatch.setattr(wa_triton, "BWD_GROUPS", 2)
    assert wa_triton._groups(8, 16) == (0, [0, 4, 8])
    assert wa_triton._groups(3, 2) == (0, [0, 1, 3])
    assert wa_triton._groups(1, 5) == (1, [0, 2, 5])
    assert wa_triton._groups(1, 1) == (1, [0, 1])
    assert wa_triton._groups(8, 16, grouped=False) == (0, [0, 8])
    assert not wa_triton._grouped(torch.device("cpu"))
    t = torch.arange(24.0).view(2, 3, 4)
    assert wa_triton._cut(t, 1, 0, 3) is t  # one group takes no views (host time on every eager call)
    assert torch.equal(wa_triton._cut(t, 1, 1, 3), t[:, 1:3])
    monkeypatch.setattr(wa_triton, "BWD_GROUPS", 3)
    assert wa_triton._groups(2, 4) == (0, [0, 1, 2])
    assert wa_triton._groups(5, 2) == (0, [0, 1, 3, 5])


@pytest.mark.parametrize("b, h, groups", [(3, 2, 2), (5, 2, 3), (1, 3, 2), (1, 3, 3)])
def test_the_backwards_groups_give_one_groups_gradients(monkeypatch, b, h, groups):
    # batch rows (b > 1) or heads (b = 1) in groups, each group's kernels launched on its own (on a GPU, on
    # alternating streams): every gradient the same, bit for bit, as one group's
    ins = _inputs(23, b=b, h=h, seed=b + h)
    w = torch.randn(b, h, 23, 6, generator=torch.Generator().manual_seed(4))
    monkeypatch.setattr(wa_triton, "_grouped", lambda device: True)  # on a GPU: while a CUDA graph is captured

    def grads(count):
        monkeypatch.setattr(wa_triton, "BWD_GROUPS", count)
        x = [t.clone().requires_grad_() for t in ins]
        o = window_hyp_attn_triton(*x, window=8, block_m=16, block_n=16)
        return torch.autograd.grad((o * w).sum(), x)

    one, split = grads(1), grads(groups)
    for name, a, c in zip("q k v c scale".split(), one, split, strict=True):
        assert torch.equal(a, c), name


def test_window_longer_than_sequence_and_odd_dims():
    inputs = _inputs(40, d=5, seed=3)
    inputs[2] = torch.randn(2, 2, 40, 3)  # value dim != qk dim
    _check(inputs, 200, block_m=16, block_n=32)


def test_dispatch_and_near_boundary_inputs():
    # large tangent vectors (points near the ball boundary, where 1 - c|x|^2 loses float32 digits):
    # the kernel is as close to the float64 answer as the float32 PyTorch reference is
    q, k, v, c, s = _inputs(50, seed=4, scale=2.0)
    with backend("triton"):
        o = window_hyp_attn(q, k, v, c, s, window=16)
    assert torch.isfinite(o).all()
    o64 = window_hyp_attn_ref(*(t.double() for t in (q, k, v, c, s)), window=16)
    err32 = (window_hyp_attn_ref(q, k, v, c, s, window=16).double() - o64).abs().max().item()
    assert (o.double() - o64).abs().max().item() <= 3 * err32 + 1e-4


def test_coincident_query_key_gradients_finite():
    q, k, v, c, s = _inputs(20, seed=5)
    k = q.clone()  # d(q_t, k_t) = 0 on the diagonal: the cone point of the distance
    ins = [t.requires_grad_() for t in (q, k, v, c, s)]
    o = window_hyp_attn_triton(*ins, window=8, block_m=16, block_n=16)
    grads = torch.autograd.grad(o.square().sum(), ins)
    assert torch.isfinite(o).all() and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("head_dim, kernel_calls", [(128, 1), (160, 0)])
def test_heads_above_the_tile_limit_take_the_reference(monkeypatch, head_dim, kernel_calls):
    calls = []
    kernel = wa_triton.window_hyp_attn_triton
    monkeypatch.setattr(wa_triton, "window_hyp_attn_triton", lambda *a, **kw: calls.append(1) or kernel(*a, **kw))
    q, k, v, c, s = _inputs(5, d=head_dim, seed=7, scale=0.3 / head_dim**0.5)
    with backend("triton"):
        o = window_hyp_attn(q, k, v, c, s, window=4)
    assert len(calls) == kernel_calls
    o64 = window_hyp_attn_ref(*(t.double() for t in (q, k, v, c, s)), window=4)
    torch.testing.assert_close(o.double(), o64, rtol=1e-4, atol=1e-4)


def _op_inputs(n=20, d=4, dv=3, h=2, seed=11):
    # what window_hyp_attn_triton hands the forward op: contiguous tangent q, k, v, float32 c and scale
    q, k, v, c, s = _inputs(n, d=d, h=h, seed=seed)
    return [q[:1].contiguous(), k[:1].contiguous(), v[:1, ..., :dv].contiguous(), c, s]


def test_opcheck_forward_op():
    # window 6 < N = 20, three key blocks of 8: the banded loop and the masked tail are both in play
    ins = [t.requires_grad_() for t in _op_inputs()]
    torch.library.opcheck(torch.ops.phasebench.window_hyp_attn_fwd.default, (*ins, 6, 16, 8))


def test_opcheck_backward_op():
    q, k, v, c, s = _op_inputs()
    o, lse, x = wa_triton.window_hyp_attn_fwd(q, k, v, c, s, 6, 16, 8)
    torch.testing.assert_close(x, exp0(q, c.reshape(1, 2, 1, 1)))
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(2))
    # not differentiable (no double backward): its inputs do not require grad
    args = (do, o, q, k, x, v, c, s, lse, 6, 16, 8)
    torch.library.opcheck(torch.ops.phasebench.window_hyp_attn_bwd.default, args)


def test_compiled_fullgraph_matches_eager():
    # N = 40 > window 6 and > one key block (8): several query and key blocks, the band crosses block edges
    inputs = _inputs(40, seed=12)
    w = torch.randn(2, 2, 40, 6, generator=torch.Generator().manual_seed(3))

    def run(fn):
        ins = [t.clone().requires_grad_() for t in inputs]
        o = fn(*ins, window=6, block_m=16, block_n=8)
        return o, torch.autograd.grad((o * w).sum(), ins)

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    o, grads = run(torch.compile(window_hyp_attn_triton, fullgraph=True, backend=counter))
    o_ref, grads_ref = run(window_hyp_attn_triton)
    # one graph, holding the forward op itself (dynamo did not trace into the launcher)
    assert counter.frame_count == 1
    targets = {n.target for n in counter.graphs[0].graph.nodes}
    assert torch.ops.phasebench.window_hyp_attn_fwd.default in targets
    torch.testing.assert_close(o, o_ref, rtol=1e-4, atol=1e-4)
    for name, a, b in zip("q k v c scale".split(), grads, grads_ref, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("window, wide", [(64, True), (200, True), (16, False)])
def test_the_launchers_take_the_unmasked_folds_where_the_window_spans_a_block(window, wide):
    # the models' window (64) and wider ones run every kernel's folded tiles without per-entry window tests
    # (WIDE); a window narrower than a block needs them. Both regimes are checked against the reference above.
    plan = list(wa_triton._split_plan(64, 64, torch.bfloat16, window))
    BD, BDV, bm, bn, _ = wa_triton._cfg(64, 64, torch.bfloat16, window, None, None)
    assert [consts["WIDE"] for _, consts, _ in plan] + [wa_triton._wide(window, bm, bn)] == [wide] * 3


@pytest.mark.parametrize(
    "d, dtype, aligned, capped",
    [(64, torch.bfloat16, True, True), (64, torch.bfloat16, False, False), (128, torch.bfloat16, True, False),
     (64, torch.float32, True, False)],
)  # fmt: skip
def test_only_the_measured_launches_cap_their_registers(d, dtype, aligned, capped):
    # 16-bit inputs at head dim 64 with N a multiple of 16 (as Triton specialises the launch): the forward at
    # FWD_MAXNREG registers (four programs an SM, run 19b) and the dq kernel at DQ_MAXNREG (three, run 18c);
    # elsewhere (unaligned, they would spill far more) uncapped
    (_, _, dkdv_launch), (_, _, dq_launch) = wa_triton._split_plan(d, d, dtype, 64, aligned=aligned)
    fwd_launch = wa_triton._fwd_launch(d, d, dtype == torch.float32, aligned)
    assert "maxnreg" not in dkdv_launch
    caps = (wa_triton.FWD_MAXNREG, wa_triton.DQ_MAXNREG) if capped else (None, None)
    assert (fwd_launch.get("maxnreg"), dq_launch.get("maxnreg")) == caps


@pytest.mark.parametrize(
    "aligned, fwd, dkdv, dq",
    [
        (True, (64, 32, 4, 2), (16, 64, 4, 2), (64, 32, 4, 2)),
        (False, (32, 32, 8, 2), (32, 32, 8, 2), (32, 32, 8, 2)),
    ],
)
def test_16bit_head_dim_128_takes_run_40s_tiles_where_n_is_a_multiple_of_16(aligned, fwd, dkdv, dq):
    # aligned: each kernel's fastest choice on the H100 (run 40), uncapped; otherwise the 8-warp 32 x 32 tiles
    # (unaligned, run 40's tiles spill 848-2,360 bytes a thread, untimed)
    _, _, bm, bn, _ = wa_triton._cfg(128, 128, torch.bfloat16, 64, None, None, aligned)
    fwd_launch = wa_triton._fwd_launch(128, 128, False, aligned)
    assert (bm, bn, fwd_launch["num_warps"], fwd_launch["num_stages"]) == fwd and "maxnreg" not in fwd_launch
    plan = list(wa_triton._split_plan(128, 128, torch.bfloat16, 64, aligned=aligned))
    found = [(c["BQ"], c["BK"], o["num_warps"], o["num_stages"]) for _, c, o in plan]
    assert found == [dkdv, dq] and all("maxnreg" not in o for _, _, o in plan)


def test_the_launches_are_capped_where_n_is_a_multiple_of_16(monkeypatch):
    # _launch_fwd and _launch_bwd pass N's alignment to their launch options: N = 64 capped, N = 33 not (both
    # exact against the reference above)
    seen = []

    def spy(name):
        default = getattr(wa_triton, name)

        def launch(*args, **kwargs):
            seen.append((name, kwargs.get("aligned", args[-1])))
            return default(*args, **kwargs)

        monkeypatch.setattr(wa_triton, name, launch)

    spy("_fwd_launch")
    spy("_split_plan")
    for n in (64, 33):
        o = window_hyp_attn_triton(*(t.requires_grad_() for t in _inputs(n, b=1)), window=8)
        o.sum().backward()
    aligned = [n % 16 == 0 for n in (64, 33)]
    assert seen == [(name, a) for a in aligned for name in ("_fwd_launch", "_split_plan")]
