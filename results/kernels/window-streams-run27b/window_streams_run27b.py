"""Run 27b: the window backward's two kernels on two CUDA streams, the batch split in groups: each group's dq
kernel, then its dk/dv kernel, groups alternating between the streams, so that one group's kernels run in the
partial last waves of another's (kernels/window_attn/triton.py _launch_bwd launches dq then dk/dv over every
head at once: each kernel's last wave runs alone). fwd+bwd from CUDA graphs (the streams fork and join inside the
captured graph), with flex_attention (dot-product, same window) in the same process, 3 interleaved rounds, median.

    python3 window_streams_run27b.py check            # each split against the landed backward, bit for bit (GPU)
    TRITON_INTERPRET=1 python3 window_streams_run27b.py check-cpu   # the same, tiny, the groups in turn (CPU)
    python3 window_streams_run27b.py OUT.json [N,...]
"""
import contextlib, json, os, statistics, sys
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
from bench.kernels import FLEX_DOT, _fwd_bwd, window_flex_anchors  # noqa: E402
from bench.tiles import _graph_ms, swapped  # noqa: E402
from kernels.grid import cdiv  # noqa: E402
from kernels.window_attn import triton as W  # noqa: E402

landed = W._launch_bwd
_SIDE = {}


def run_split(bounds):
    """_launch_bwd with the batch rows split at `bounds`, groups alternating between two streams."""

    def launch(do, o, q, k, x, v, c32, s32, lse, window, block_m, block_n):
        Bsz, H, n, d = x.shape
        plan = W._split_plan(d, v.shape[-1], x.dtype, window, block_m, block_n, aligned=n % 16 == 0)
        (dkdv, kc, kl), (dq_kernel, qc, ql) = plan
        nk, nq = cdiv(n, kc["BK"]), cdiv(n, qc["BQ"])
        delta = torch.empty(lse.shape, device=x.device, dtype=torch.float32)
        keys = torch.empty(Bsz, H, 2, n, device=x.device, dtype=torch.float32)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        groups = list(zip(bounds[:-1], bounds[1:]))
        # each group's partial sums of dc and dscale in a buffer of its own (the kernels index slots by i_bh)
        parts = [torch.empty(2, H, (b1 - b0) * (nk + nq), device=x.device, dtype=torch.float32) for b0, b1 in groups]
        scalars = (n, H, window, nk + nq, 1.0 - W.BALL_EPS, W.MIN_NORM)
        cuda = x.is_cuda  # on a CPU (TRITON_INTERPRET=1) the groups run one after another
        main = torch.cuda.current_stream() if cuda else None
        side = _SIDE.setdefault(x.device, torch.cuda.Stream(x.device)) if cuda else None
        if cuda:
            side.wait_stream(main)
        for g, (b0, b1) in enumerate(groups):
            ins = tuple(t[b0:b1] for t in (x, k, v)) + (c32, s32) + tuple(t[b0:b1] for t in (do, lse, delta, keys))
            with torch.cuda.stream(main if g % 2 == 0 else side) if cuda else contextlib.nullcontext():
                dq_kernel[(nq, (b1 - b0) * H)](*ins, q[b0:b1], dq[b0:b1], o[b0:b1], parts[g][1], parts[g][0],
                                               *scalars, **qc, **ql)
                dkdv[(nk, (b1 - b0) * H)](*ins, dk[b0:b1], dv[b0:b1], parts[g][0], parts[g][1], *scalars, **kc, **kl)
        if cuda:
            main.wait_stream(side)
        return dq, dk, dv, torch.cat(parts, -1).sum(-1)

    return launch


SPLITS = {"2 groups": (0, 4, 8), "3 + 5": (0, 3, 8), "4 groups": (0, 2, 4, 6, 8)}


def inputs(n, B=8, H=16, D=64, seed=0, device="cuda", dtype=torch.bfloat16):
    g = torch.Generator(device=device).manual_seed(seed)
    q, k = ((torch.randn(B, H, n, D, device=device, generator=g) * 0.7 / D**0.5).to(dtype).requires_grad_()
            for _ in range(2))
    v = torch.randn(B, H, n, D, device=device, generator=g).to(dtype).requires_grad_()
    c = (torch.rand(H, device=device, generator=g) + 0.2).requires_grad_()
    s = (torch.rand(H, device=device, generator=g) + 0.5).requires_grad_()
    return q, k, v, c, s


def grads(ins, fn):
    for t in ins:
        t.grad = None
    o = fn()
    o.backward(torch.ones_like(o) * 0.01)
    return [t.grad.clone() for t in ins]


if __name__ == "__main__":
    if sys.argv[1] in ("check", "check-cpu"):
        cpu = sys.argv[1] == "check-cpu"  # TRITON_INTERPRET=1, tiny shapes in float32, the groups in turn
        for n in (40, 23) if cpu else (2048, 1000):
            ins = inputs(n, B=8, H=2, D=16, device="cpu", dtype=torch.float32) if cpu else inputs(n)
            fn = lambda: W.window_hyp_attn_triton(*ins, 64)  # noqa: E731
            ref = grads(ins, fn)
            for name, b in SPLITS.items():
                with swapped(W, "_launch_bwd", run_split(b)):
                    out = grads(ins, fn)
                exact = [torch.equal(a, b) for a, b in zip(ref[:3], out[:3])]
                close = [((a - b).abs().max() / a.abs().max()).item() for a, b in zip(ref[3:], out[3:])]
                print(f"N {n} {name}: dq, dk, dv identical {exact}; dc, dscale rel diff {close}", flush=True)
        sys.exit(0)
    sizes = [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [2048, 4096, 16384]
    rows = {}
    for n in sizes:
        ins = inputs(n)
        q, k, v, c, s = ins
        flex_fn, flex_ins = window_flex_anchors(q, k, v, c, s, 64)[FLEX_DOT]
        ours = _fwd_bwd(lambda: W.window_hyp_attn_triton(*ins, 64), ins)
        variants = {"landed": landed} | {name: run_split(b) for name, b in SPLITS.items()}
        timers = {"flex_attention": _fwd_bwd(flex_fn, flex_ins)} | {name: ours for name in variants}
        times = {name: [] for name in timers}
        for rnd in range(3):
            for name, fn in timers.items():
                with swapped(W, "_launch_bwd", variants.get(name, landed)):
                    times[name].append(_graph_ms(fn).get("ms"))
        med = {name: statistics.median(t) for name, t in times.items()}
        rows[n] = dict(ms=med, reps=times)
        print(f"N {n}: " + "  ".join(f"{name} {ms:.4f} ({ms / med['flex_attention']:.3f}x)" for name, ms in med.items()),
              flush=True)
    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT"))
    json.dump(dict(env=env, rows=rows), open(sys.argv[1], "w"), indent=1)
