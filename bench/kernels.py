"""Benchmark the Triton kernels against their PyTorch references and external anchors.

For each op and sequence length N: forward and forward+backward time (median and 20/80 % quantiles
after warm-up, `triton.testing.do_bench` on GPU; every implementation timed --repeats times, interleaved,
and the median repetition kept), achieved bytes/s against the device-copy bandwidth
measured in the same run, the speedup over the PyTorch reference, and the anchors where importable
(fla `chunk_linear_attn`, torch SDPA flash causal, `accelerated_scan` triton and warp backends, compiled
torch `flex_attention` on our sliding window with dot-product and with our Poincare score).

    python bench/kernels.py                       # GPU, N in 512 .. 16K, writes results/kernels/kernels.json
    python bench/kernels.py --device cpu --quick  # smoke test: tiny sizes, references only (Triton too
                                                  # when TRITON_INTERPRET=1), no anchors
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is bench/kernels.py: drop its own folder from the path so `import kernels` finds the package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

SIZES = [512, 1024, 2048, 4096, 8192, 16384]
OPS = ["scan", "bk_core", "linear_attn", "poincare_exp0", "poincare_log0", "poincare_mobius_add", "window_attn"]


# ----------------------------------------------------------------------------------------- timing
def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


#: --cuda-graph: time each call replayed from a CUDA graph, which leaves out the host's launch work
#: (Python, autograd, Triton's launcher) and shows what the kernels alone take
CUDA_GRAPH = False
#: --skip-anchors: words; an anchor whose name contains one of them is neither compiled nor timed
SKIP_ANCHORS: frozenset[str] = frozenset()


def skipped(name: str) -> bool:
    """Whether --skip-anchors leaves out the anchor `name`."""
    return any(word in name for word in SKIP_ANCHORS)


def time_fn(fn, device, quick=False, graph=None):
    """-> dict(median, q20, q80) in milliseconds; graph: replay a CUDA graph of fn (default: --cuda-graph)."""
    if device == "cuda":
        import triton.testing

        if CUDA_GRAPH if graph is None else graph:
            med, q20, q80 = triton.testing.do_bench_cudagraph(
                fn, rep=100 if not quick else 20, quantiles=[0.5, 0.2, 0.8]
            )
        else:
            med, q20, q80 = triton.testing.do_bench(
                fn, warmup=25, rep=100 if not quick else 20, quantiles=[0.5, 0.2, 0.8]
            )
        return {"median_ms": med, "q20_ms": q20, "q80_ms": q80}
    fn()  # warm-up
    ts = []
    reps = 3 if quick else 10
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()

    def q(p):
        return ts[min(len(ts) - 1, int(p * (len(ts) - 1) + 0.5))]

    return {"median_ms": statistics.median(ts), "q20_ms": q(0.2), "q80_ms": q(0.8)}


def copy_bandwidth(device, quick):
    """Bytes/s of a large device copy (read + write counted)."""
    n = (1 << 18) if quick else (1 << 28)  # 1 MiB / 1 GiB of float32
    x = torch.randn(n, device=device)
    y = torch.empty_like(x)
    # never from a graph: captured, this copy ran at 2,770 GB/s against 4,244 eager on the H200 (run 7; likely
    # a memcpy node on the copy engines), which lowered the bound and inflated the --cuda-graph percentages
    t = time_fn(lambda: y.copy_(x), device, quick, graph=False)["median_ms"]
    return 2 * x.numel() * x.element_size() / (t * 1e-3)


# ----------------------------------------------------------------------------------------- cases
def _fwd_bwd(fn, inputs):
    """fn's forward and backward (fn returns a tensor or a tuple of tensors) with fixed random cotangents."""

    def run():
        outs = fn()
        torch.autograd.backward(outs if isinstance(outs, tuple) else (outs,), grads)
        for t in inputs:
            t.grad = None

    outs = fn()
    grads = [torch.randn_like(o) for o in (outs if isinstance(outs, tuple) else (outs,))]
    return run


def case_scan(n, device, dtype, quick):
    from kernels.scan import diag_scan_ref
    from kernels.scan.triton import diag_scan_triton

    B, C = (2, 8) if quick else (8, 1536)
    a = (torch.rand(B, C, n, device=device) * 0.1 + 0.9).requires_grad_()
    b = torch.randn(B, C, n, device=device).requires_grad_()
    numel = a.numel()
    impls = {"triton": lambda: diag_scan_triton(a, b), "torch_ref": lambda: diag_scan_ref(a, b)}
    anchors = {}
    if not quick and device == "cuda":
        # a skipped anchor is not imported: importing the warp backend compiles its CUDA extension (nvcc)
        for name, module in (("accelerated_scan.triton", "scalar"), ("accelerated_scan.warp", "warp")):
            anchors[name] = "skipped" if skipped(name) else _scan_anchor(module, a, b)
    shape = {"B": B, "C": C, "N": n, "dtype": "float32"}
    # fwd: read a, b, write h; bwd: read a, h, dh, write da, db
    return shape, impls, anchors, (a, b), 3 * numel * 4, 8 * numel * 4


def _missing(e):
    """An anchor that cannot run: 'missing: <Type>: <first line of the message>'."""
    return f"missing: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def _scan_anchor(module, a, b):
    """accelerated_scan.<module>'s scan of (a, b) as a callable, or why it is missing."""
    import importlib

    try:
        scan = importlib.import_module(f"accelerated_scan.{module}").scan
    except Exception as e:  # noqa: BLE001
        return _missing(e)
    return lambda: scan(a, b)


def case_bk_core(n, device, dtype, quick):
    from kernels.bk_core import bk_core_parallel
    from kernels.bk_core.lookback import bk_core_lookback
    from kernels.bk_core.triton import bk_core_triton

    B, C = (2, 8) if quick else (16, 64)
    v = torch.randn(B, n, C, device=device).requires_grad_()
    h0, beta = (
        (torch.randn(C, device=device) * 0.1).requires_grad_(),
        (torch.rand(C, device=device) + 0.5).requires_grad_(),
    )
    z_re, z_im = torch.zeros(C, device=device).requires_grad_(), (torch.rand(C, device=device) + 0.5).requires_grad_()
    args = (v, h0, beta, z_re, z_im)
    # triton: the halo kernels, the two-pass scan gated behind them (the default); triton_lookback: the decoupled
    # look-back in one pass each way
    impls = {
        "triton": lambda: bk_core_triton(*args),
        "triton_lookback": lambda: bk_core_lookback(*args),
        "torch_ref": lambda: bk_core_parallel(*args),
    }
    shape = {"B": B, "N": n, "C": C, "dtype": "float32", "causal": True}
    # fwd: read v, write g_re, g_im; bwd: read g_re, g_im, dg_re, dg_im, write dv (per-channel sums are tiny)
    return shape, impls, {}, args, 3 * v.numel() * 4, 8 * v.numel() * 4


def _sdpa_anchor(q, k, v):
    """torch's flash SDPA, causal over the whole sequence, on (q, k, v) as a callable, or why it is missing."""
    try:
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except Exception as e:  # noqa: BLE001
        return _missing(e)

    def sdpa():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return sdpa


def case_linear_attn(n, device, dtype, quick):
    from kernels.linear_attn import causal_linear_attn_chunked
    from kernels.linear_attn.triton import causal_linear_attn_triton

    B, H, D = (1, 2, 32) if quick else (8, 16, 128)
    q, k, v = (torch.randn(B, H, n, D, device=device, dtype=dtype).requires_grad_() for _ in range(3))
    # triton: the default (chunk-parallel) backward; triton_sequential_bwd: the same forward, sequential backward
    impls = {
        "triton": lambda: causal_linear_attn_triton(q, k, v),
        "triton_sequential_bwd": lambda: causal_linear_attn_triton(q, k, v, backward="sequential"),
        "torch_ref": lambda: causal_linear_attn_chunked(q, k, v),
    }
    anchors = {}
    if not quick and device == "cuda":
        try:
            from fla.ops.linear_attn import chunk_linear_attn

            qf, kf, vf = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
            anchors["fla.chunk_linear_attn(normalize=True)"] = (
                lambda: chunk_linear_attn(qf, kf, vf, normalize=True)[0],
                (qf, kf, vf),
            )
        except Exception as e:  # noqa: BLE001
            anchors["fla.chunk_linear_attn(normalize=True)"] = _missing(e)
        anchors["torch.sdpa_flash_causal"] = _sdpa_anchor(q, k, v)
    numel = q.numel()
    es = q.element_size()
    shape = {"B": B, "H": H, "N": n, "D": D, "dtype": str(dtype).replace("torch.", "")}
    # fwd: q, k, v in, o out (+ den); bwd: q, k, v, o, do in, dq, dk, dv out
    return shape, impls, anchors, (q, k, v), 4 * numel * es, 12 * numel * es


def _case_poincare(op, n, device, dtype, quick):
    from kernels.poincare import naive as pn
    from kernels.poincare import triton as pt

    B, H, D = (1, 2, 16) if quick else (8, 16, 64)
    c = (torch.rand(1, H, 1, 1, device=device) + 0.2).requires_grad_()
    x = (torch.randn(B, H, n, D, device=device, dtype=dtype) * 0.05).requires_grad_()
    y = (torch.randn(B, H, n, D, device=device, dtype=dtype) * 0.05).requires_grad_()
    numel, es = x.numel(), x.element_size()
    if op == "mobius_add":
        impls = {"triton": lambda: pt.mobius_add_triton(x, y, c), "torch_ref": lambda: pn.mobius_add(x, y, c)}
        ins, fb, bb = (x, y, c), 3 * numel * es, 8 * numel * es
    else:
        impls = {"triton": lambda: getattr(pt, op + "_triton")(x, c), "torch_ref": lambda: getattr(pn, op)(x, c)}
        ins, fb, bb = (x, c), 2 * numel * es, 5 * numel * es
    shape = {"B": B, "H": H, "N": n, "D": D, "dtype": str(dtype).replace("torch.", "")}
    return shape, impls, {}, ins, fb, bb


#: the flex_attention anchors of case_window_attn
FLEX_DOT = "torch.flex_attention window (dot-product, compiled)"
FLEX_HYP = "torch.flex_attention window (our Poincare score_mod, compiled)"


def window_flex_anchors(q, k, v, c, s, window, compile=True):
    """flex_attention on our sliding window: {FLEX_DOT: (fn, inputs), FLEX_HYP: (fn, inputs)}, fn() -> o.

    The block mask is our window: query t sees the `window` keys s in (t - window, t], the diagonal
    included (kernels/window_attn/naive.py). Both scale per head like ours: FLEX_DOT scores
    scale_h * <q_t, k_s>; FLEX_HYP scores -scale_h * d_c(exp0(q_t), exp0(k_s)) with naive.pair_dist on the
    Gram entries (flex's q.k of the exp0-mapped q, k, and their squared norms captured by the score_mod).
    FLEX_DOT's scale is a constant (no gradient); FLEX_HYP takes c and s with their gradients.
    compile=False: the uncompiled functions (what the test checks against the references).
    """
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    from kernels.poincare import naive as pn
    from kernels.window_attn.naive import pair_dist

    n = q.shape[2]

    def sliding_window(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < window)

    mask = create_block_mask(sliding_window, None, None, n, n, device=q.device)

    def dot(q, k, v, scale):
        def score_mod(score, b, h, q_idx, kv_idx):
            return score * scale[h]

        return flex_attention(q, k, v, score_mod=score_mod, block_mask=mask, scale=1.0)

    def hyp(q, k, v, c, scale):
        dt = pn.compute_dtype(q, k, v)
        cf, sf = c.to(dt), scale.to(dt)
        qb, kb = (pn.exp0(t, cf.view(1, -1, 1, 1)).to(v.dtype) for t in (q, k))
        x2, y2 = ((t.to(dt) * t.to(dt)).sum(-1) for t in (qb, kb))  # (B, H, N)

        def score_mod(score, b, h, q_idx, kv_idx):  # score = <exp0(q_t), exp0(k_s)>
            return -sf[h] * pair_dist(x2[b, h, q_idx], y2[b, h, kv_idx], score, cf[h])

        return flex_attention(qb, kb, v, score_mod=score_mod, block_mask=mask, scale=1.0)

    if compile:
        # a fresh compile per case: each N compiles anew, and dynamo's per-function recompile limit (8) would
        # otherwise send the later sizes to eager flex_attention, which materialises the N x N scores
        torch._dynamo.reset()
        dot, hyp = torch.compile(dot, dynamic=False), torch.compile(hyp, dynamic=False)
    s_const = s.detach()
    return {
        FLEX_DOT: (lambda: dot(q, k, v, s_const), (q, k, v)),
        FLEX_HYP: (lambda: hyp(q, k, v, c, s), (q, k, v, c, s)),
    }


def _probe_anchor(fn, inputs):
    """Run fn once forward (no grad) and once forward+backward, outside the timed region (compiles a
    torch.compile'd fn): -> (fn, inputs) when both run, (fn, inputs, "missing: ...") when only the forward
    does (its fwd+bwd cell then records why), "missing: ..." when the forward fails."""
    try:
        with torch.no_grad():
            fn()
    except Exception as e:  # noqa: BLE001
        return _missing(e)
    try:
        _fwd_bwd(fn, inputs)()
    except Exception as e:  # noqa: BLE001
        return (fn, inputs, _missing(e))
    return (fn, inputs)


def case_window_attn(n, device, dtype, quick):
    from kernels.window_attn import window_hyp_attn_ref
    from kernels.window_attn.triton import window_hyp_attn_triton

    B, H, D = (1, 2, 16) if quick else (8, 16, 64)
    window = 64
    q, k = ((torch.randn(B, H, n, D, device=device) * 0.7 / D**0.5).to(dtype).requires_grad_() for _ in range(2))
    v = torch.randn(B, H, n, D, device=device, dtype=dtype).requires_grad_()
    c = (torch.rand(H, device=device) + 0.2).requires_grad_()
    s = (torch.rand(H, device=device) + 0.5).requires_grad_()
    impls = {
        "triton": lambda: window_hyp_attn_triton(q, k, v, c, s, window),
        "torch_ref": lambda: window_hyp_attn_ref(q, k, v, c, s, window),
    }
    anchors = {}
    if not quick and device == "cuda":
        anchors["torch.sdpa_flash_causal (full causal, not windowed)"] = _sdpa_anchor(q, k, v)
        try:
            flex = window_flex_anchors(q, k, v, c, s, window)
            anchors.update(
                {name: "skipped" if skipped(name) else _probe_anchor(fn, ins) for name, (fn, ins) in flex.items()}
            )
        except Exception as e:  # noqa: BLE001
            anchors.update(dict.fromkeys((FLEX_DOT, FLEX_HYP), _missing(e)))
    numel, es = q.numel(), q.element_size()
    shape = {"B": B, "H": H, "N": n, "D": D, "window": window, "dtype": str(dtype).replace("torch.", "")}
    return shape, impls, anchors, (q, k, v, c, s), 4 * numel * es, 11 * numel * es


CASES = {
    "scan": lambda n, dev, dt, quick: case_scan(n, dev, dt, quick),
    "bk_core": case_bk_core,
    "linear_attn": case_linear_attn,
    "poincare_exp0": lambda n, dev, dt, quick: _case_poincare("exp0", n, dev, dt, quick),
    "poincare_log0": lambda n, dev, dt, quick: _case_poincare("log0", n, dev, dt, quick),
    "poincare_mobius_add": lambda n, dev, dt, quick: _case_poincare("mobius_add", n, dev, dt, quick),
    "window_attn": case_window_attn,
}
DTYPES = {
    "scan": torch.float32,
    "bk_core": torch.float32,
    "linear_attn": torch.bfloat16,
    "poincare_exp0": torch.float32,
    "poincare_log0": torch.float32,
    "poincare_mobius_add": torch.float32,
    "window_attn": torch.bfloat16,
}


def _measure(fn, inputs, device, quick, bwd_missing=None):
    """fwd and fwd+bwd timings of fn; errors are recorded, not raised. bwd_missing: a forward-only fn, its
    fwd+bwd cell records this "missing: ..." string instead of a timing."""
    res = {}
    try:
        with torch.no_grad():
            res["fwd"] = time_fn(fn, device, quick)
    except Exception as e:  # noqa: BLE001
        res["fwd"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    if bwd_missing:
        res["fwd_bwd"] = {"missing": bwd_missing}
        return res
    try:
        res["fwd_bwd"] = time_fn(_fwd_bwd(fn, inputs), device, quick)
    except Exception as e:  # noqa: BLE001
        res["fwd_bwd"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    return res


def _median_of_repeats(ms):
    """Per kind (fwd, fwd_bwd): the repetition with the median time, its median in `repeats_ms` beside it; the
    first repetition's error or "missing" cell where a repetition has no time."""
    out = {}
    for kind in ("fwd", "fwd_bwd"):
        cells = [m[kind] for m in ms]
        timed = sorted((c for c in cells if "median_ms" in c), key=lambda c: c["median_ms"])
        if len(timed) < len(cells):
            out[kind] = next(c for c in cells if "median_ms" not in c)
            continue
        out[kind] = dict(timed[(len(timed) - 1) // 2], repeats_ms=[c["median_ms"] for c in cells])
    return out


#: when this process started: the clock of the progress lines
STARTED = time.perf_counter()


#: a line `progress` prints (not c10's "[W... ] Warning: ..." lines, which also start with a bracket)
PROGRESS_LINE = re.compile(r"\[ *\d+\.\d s\] (.*)")


def progress(message: str) -> None:
    """One line on stderr with the seconds since start, before each step that may take long (an anchor's
    compile or autotuning, a timing): a run stopped by its time limit shows where its time went."""
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


def profile_kernels(fn, inputs, steps=3, top=12):
    """The device kernels of one eager fwd+bwd call of fn, averaged over `steps` calls under torch.profiler:
    rows as bench/profile_step.py's (name, calls_per_step, ms_per_step, share), the `top` by time."""
    from torch.profiler import ProfilerActivity, profile

    from bench.profile_step import timed_events, top_rows

    run = _fwd_bwd(fn, inputs)
    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            run()
        torch.cuda.synchronize()
    events, attr = timed_events(prof, "cuda")
    return top_rows(events, attr, top, steps)


def run_case(op, n, device, quick, bw, triton_ok, repeats=1, profile=False):
    """One op at one N: every implementation and anchor timed `repeats` times, interleaved (A B C A B C ...),
    each figure the median of its repetitions; with `profile` (CUDA), then each one's kernels but the
    reference's (profile_kernels)."""
    progress(f"{op} N={n}: inputs and anchors (compiles what the anchors compile)")
    shape, impls, anchors, inputs, fwd_bytes, fb_bytes = CASES[op](
        n, device, DTYPES[op] if device == "cuda" else torch.float32, quick
    )
    row = {"op": op, "shape": shape, "bytes_fwd": fwd_bytes, "bytes_fwd_bwd": fb_bytes, "impls": {}}
    timed = {}  # name -> (fn, inputs, bwd_missing)
    for name, fn in impls.items():
        if name.startswith("triton") and not triton_ok:
            row["impls"][name] = {"skipped": "no GPU and TRITON_INTERPRET unset"}
        else:
            timed[name] = (fn, inputs, None)
    for name, a in anchors.items():
        if skipped(name):
            row["impls"][name] = {"skipped": "--skip-anchors"}
        elif isinstance(a, str):
            row["impls"][name] = {"missing": a}
        else:  # an anchor: fn, (fn, inputs) or (fn, inputs, "missing: ..." for its backward)
            timed[name] = (*a, None)[:3] if isinstance(a, tuple) else (a, inputs[:3], None)
    runs = {name: [] for name in timed}
    for rep in range(repeats):
        for name, (fn, ins, bwd_missing) in timed.items():
            progress(f"{op} N={n}: {name} (repetition {rep + 1} of {repeats})")
            runs[name].append(_measure(fn, ins, device, quick, bwd_missing))
            _sync(device)
    for name, ms in runs.items():
        m = _median_of_repeats(ms)
        if name in impls:
            for kind, nbytes in (("fwd", fwd_bytes), ("fwd_bwd", fb_bytes)):
                t = m[kind].get("median_ms")
                if t:
                    m[kind]["GBps"] = nbytes / (t * 1e-3) / 1e9
                    m[kind]["frac_of_copy_bw"] = nbytes / (t * 1e-3) / bw
        row["impls"][name] = m
    if profile and device == "cuda":
        row["profile"] = {}
        for name, (fn, ins, bwd_missing) in timed.items():
            if name != "torch_ref" and not bwd_missing:
                progress(f"{op} N={n}: {name} (profile)")
                row["profile"][name] = profile_kernels(fn, ins)
    tri, ref = row["impls"].get("triton", {}), row["impls"].get("torch_ref", {})
    for kind in ("fwd", "fwd_bwd"):
        t, r = tri.get(kind, {}).get("median_ms"), ref.get(kind, {}).get("median_ms")
        if t and r:
            row[f"speedup_vs_ref_{kind}"] = r / t
        for name, a in row["impls"].items():
            if name in ("triton", "torch_ref") or kind not in a:
                continue
            an = a[kind].get("median_ms")
            if t and an:
                row.setdefault("anchor_over_triton", {})[f"{name}:{kind}"] = an / t
    return row


def run_case_in_child(op, n, args):
    """run_case in a fresh process (its own CUDA context); the child's row, its copy bandwidth kept
    for the fractions it reports."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "case.json"
        cmd = (
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--device",
                args.device,
                "--ops",
                op,
                "--sizes",
                str(n),
                "--repeats",
                str(args.repeats),
                "--skip-anchors",
                args.skip_anchors,
                "--out",
                str(out),
            ]
            + (["--quick"] if args.quick else [])
            + (["--cuda-graph"] if args.cuda_graph else [])
            + (["--profile"] if args.profile else [])
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if not out.exists():
            raise RuntimeError(_child_failure(proc))
        child = json.loads(out.read_text())
    row = child["rows"][0] if child["rows"] else {"op": op, "shape": {"N": n}, "impls": {}}
    row["child_copy_bandwidth_Bps"] = child["copy_bandwidth_Bps"]
    if proc.returncode != 0:
        row["error"] = _child_failure(proc)
    return row


def _child_failure(proc) -> str:
    """How a child case ended: its exit code, the last step its progress lines named (which implementation
    was running) and the end of its stderr."""
    steps = [m[1] for m in map(PROGRESS_LINE.match, proc.stderr.splitlines()) if m]
    during = f" during {steps[-1]!r}" if steps else ""
    return f"child exited {proc.returncode}{during}: {proc.stderr.strip()[-300:]}"


def environment(argv, device):
    """The machine (orchestrator.environment.collect: GPU, driver, torch, triton, git) plus this command
    and the anchors' versions."""
    from orchestrator.environment import collect

    env = collect(device) | {"command": " ".join([sys.executable, sys.argv[0]] + list(argv))}
    for pkg in ("fla", "accelerated_scan"):
        try:
            env[pkg] = getattr(__import__(pkg), "__version__", "present")
        except Exception as e:  # noqa: BLE001
            env[pkg] = f"missing ({type(e).__name__})"
    return env


def _fmt(x, unit=""):
    return "-" if x is None else f"{x:.3g}{unit}"


def print_table(rows, bw):
    print(f"device copy bandwidth: {bw / 1e9:.1f} GB/s")
    print(
        f"{'op':<20}{'N':>7} {'impl':<44}{'fwd ms':>10}{'fwd+bwd ms':>12}{'fwd %bw':>9}{'fb %bw':>8}"
        f"{'speedup fwd/fb':>16}"
    )
    for row in rows:
        for name, m in row["impls"].items():
            f, fb = m.get("fwd", {}), m.get("fwd_bwd", {})
            sp = ""
            if name == "triton":
                sp = f"{_fmt(row.get('speedup_vs_ref_fwd'))}/{_fmt(row.get('speedup_vs_ref_fwd_bwd'))}"
            note = m.get("missing") or m.get("skipped") or f.get("error") or ""
            if not note and (fb.get("missing") or fb.get("error")):
                note = "fwd+bwd " + (fb.get("missing") or fb.get("error"))
            frac, fb_frac = f.get("frac_of_copy_bw"), fb.get("frac_of_copy_bw")
            print(
                f"{row['op']:<20}{row['shape']['N']:>7} {name[:43]:<44}{_fmt(f.get('median_ms')):>10}"
                f"{_fmt(fb.get('median_ms')):>12}{_fmt(frac * 100 if frac else None):>9}"
                f"{_fmt(fb_frac * 100 if fb_frac else None):>8}{sp:>16} {note[:60]}"
            )
        for name, kernels in row.get("profile", {}).items():
            print(f"  kernels of one fwd+bwd call, {name}:")
            for k in kernels:
                print(f"    {k['share']:6.1%} {k['ms_per_step']:9.4f} ms {k['calls_per_step']:4.0f}x  {k['name'][:90]}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny sizes, no anchors (smoke test)")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma list of {OPS}")
    p.add_argument("--sizes", default=None, help="comma list of N (default 512..16384, quick: 64,128)")
    p.add_argument(
        "--skip-anchors",
        default="",
        help="comma list of words: an anchor whose name contains one is neither compiled nor timed "
        "(e.g. accelerated_scan.warp,score_mod)",
    )
    p.add_argument(
        "--isolate",
        default="",
        help="comma list of ops whose cases each run in a child process "
        "(an anchor that crashes the CUDA context then loses only its own case)",
    )
    p.add_argument("--budget-s", type=float, default=1e9, help="stop starting new cases after this many seconds")
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        help="time replays of a CUDA graph of each call (no host launch work in the figure)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="time every implementation this many times, interleaved, and keep the median (default 3)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the timings, list each implementation's device kernels per fwd+bwd call (torch.profiler, "
        "eager, CUDA only)",
    )
    p.add_argument("--out", default=str(ROOT / "results/kernels/kernels.json"))
    args = p.parse_args(argv)
    global CUDA_GRAPH, SKIP_ANCHORS
    CUDA_GRAPH = args.cuda_graph
    SKIP_ANCHORS = frozenset(w.strip() for w in args.skip_anchors.split(",") if w.strip())
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([64, 128] if args.quick else SIZES)
    ops = [o for o in args.ops.split(",") if o]
    for o in ops:
        if o not in CASES:
            p.error(f"unknown op {o!r}")
    if args.repeats < 1:
        p.error(f"--repeats: must be at least 1 (got {args.repeats})")
    triton_ok = args.device == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    t_start = time.time()
    bw = copy_bandwidth(args.device, args.quick)
    result = {
        "environment": environment(argv, args.device),
        "device": args.device,
        "quick": args.quick,
        "cuda_graph": args.cuda_graph,
        "copy_bandwidth_Bps": bw,
        "rows": [],
        "not_run": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for op in ops:
        for n in sizes:
            if time.time() - t_start > args.budget_s:
                result["not_run"].append({"op": op, "N": n, "why": "time budget"})
                continue
            try:
                if op in args.isolate.split(","):
                    row = run_case_in_child(op, n, args)
                else:
                    row = run_case(
                        op, n, args.device, args.quick, bw, triton_ok, repeats=args.repeats, profile=args.profile
                    )
            except Exception as e:  # noqa: BLE001
                row = {"op": op, "shape": {"N": n}, "impls": {}, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            result["rows"].append(row)
            print_table([row], bw)
            sys.stdout.flush()
            if args.device == "cuda":
                torch.cuda.empty_cache()
            out.write_text(json.dumps(result, indent=1))  # partial results survive a time-out
    result["wall_s"] = time.time() - t_start
    out.write_text(json.dumps(result, indent=1))
    for row in result["rows"]:
        if "error" in row:
            print(f"ERROR {row['op']} N={row['shape']['N']}: {row['error']}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
