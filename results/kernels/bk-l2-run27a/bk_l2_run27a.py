"""Run 27a: can the forward sweep's second read of v come from L2? The segment maps walk their rows forward and the
sweep walks them forward too, so when the sweep starts, the rows it wants first are the ones read longest ago (the
first adjoint pass walks forward and the adjoint sweep backward: that pair already reads in LRU-friendly order).

Variants of kernels/bk_core/triton.py, built from its source text here (the replacements below, ops renamed):
  R:  the segment maps walk their rows last to first (P <- P M), so that each segment's first rows are the ones
      read last; the product is the same, up to rounding.
  S:  the forward sweep's g stores evict_first.
  A:  the adjoint sweep's dv stores evict_first.
fwd+bwd and forward from CUDA graphs, one process, 3 interleaved rounds, median; the kernels per torch.profiler.

    python3 bk_l2_run27a.py check              # each variant against the landed kernels (TRITON_INTERPRET=1 on a CPU)
    python3 bk_l2_run27a.py OUT.json [B,N,C]   # timings (GPU)
"""
import importlib.util, json, os, re, statistics, sys, tempfile
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
SRC = open(os.path.join(ROOT, "kernels", "bk_core", "triton.py")).read()

BACKWARD = '''
@triton.jit
def _mat_step_right(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x, valid, ar0, ai, b2, MASKED: tl.constexpr):
    """P <- P M with M = [[0, 1], [-b2, a]], a = ar0 + x - i*ai; P unchanged where not valid."""
    ar = ar0 + x
    ai_ = -ai
    n01r = p00r + ar * p01r - ai_ * p01i
    n01i = p00i + ar * p01i + ai_ * p01r
    n11r = p10r + ar * p11r - ai_ * p11i
    n11i = p10i + ar * p11i + ai_ * p11r
    return (
        keep(valid, -b2 * p01r, p00r, MASKED),
        keep(valid, -b2 * p01i, p00i, MASKED),
        keep(valid, n01r, p01r, MASKED),
        keep(valid, n01i, p01i, MASKED),
        keep(valid, -b2 * p11r, p10r, MASKED),
        keep(valid, -b2 * p11i, p10i, MASKED),
        keep(valid, n11r, p11r, MASKED),
        keep(valid, n11i, p11i, MASKED),
    )


@triton.jit
def _mat4_right(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2,
                MASKED: tl.constexpr):
    """P <- P M_3 M_2 M_1 M_0, rescaled."""
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat_step_right(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x3, k3, ar0, ai, b2, MASKED)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat_step_right(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x2, k2, ar0, ai, b2, MASKED)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat_step_right(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x1, k1, ar0, ai, b2, MASKED)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat_step_right(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, k0, ar0, ai, b2, MASKED)
    sc = rcp_approx(_max8(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i))
    return p00r * sc, p00i * sc, p01r * sc, p01i * sc, p10r * sc, p10i * sc, p11r * sc, p11i * sc


@triton.jit
def _mat8_right(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, i, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7, ar0,
                ai, b2, MASKED: tl.constexpr):
    """P <- P M_{i+7} ... M_i."""
    k0, k1, k2, k3, k4, k5, k6, k7 = _masks8(cmask, i, end, MASKED)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat4_right(
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x4, x5, x6, x7, k4, k5, k6, k7, ar0, ai, b2, MASKED)
    return _mat4_right(p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, x0, x1, x2, x3, k0, k1, k2, k3, ar0, ai, b2,
                       MASKED)


@triton.jit
def _segment_product_backward(vb, cols, start, end, cmask, ar0, ai, b2, N, C, REVERSE: tl.constexpr,
                              BLOCK_C: tl.constexpr):
    """As _segment_product_prefetched, the rows walked from the segment's last to its first (P <- P M)."""
    one = tl.full([BLOCK_C], 1.0, tl.float32)
    zero = tl.zeros([BLOCK_C], tl.float32)
    p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = one, zero, zero, zero, zero, zero, one, zero
    bulk = (end - start) // 8 * 8
    for j in range(bulk, end - start, 8):  # the rows past the last multiple of 8 first
        x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(vb, cols, start + j, end, cmask, N, C, REVERSE)
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat8_right(
            p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, start + j, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7,
            ar0, ai, b2, True)
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(vb, cols, tl.maximum(start + bulk - 8, start), end, cmask, N, C, REVERSE)
    for j in range(0, bulk, 8):
        i = start + bulk - 8 - j
        y0, y1, y2, y3, y4, y5, y6, y7 = _rows8(vb, cols, tl.maximum(i - 8, start), end, cmask, N, C, REVERSE)
        p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i = _mat8_right(
            p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i, i, end, cmask, x0, x1, x2, x3, x4, x5, x6, x7, ar0, ai,
            b2, False)
        x0, x1, x2, x3, x4, x5, x6, x7 = y0, y1, y2, y3, y4, y5, y6, y7
    return p00r, p00i, p01r, p01i, p10r, p10i, p11r, p11i


@triton.jit
def _seg_map_kernel('''


def _sub(src, old, new, count=1):
    assert src.count(old) == count, (old, src.count(old))
    return src.replace(old, new)


def variant(tag):
    src = _sub(SRC, '"phasebench::bk_core_fwd"', f'"phasebench::bk_core_fwd_{tag}"')
    src = _sub(src, '"phasebench::bk_core_bwd"', f'"phasebench::bk_core_bwd_{tag}"')
    if "R" in tag:
        src = _sub(src, "\n@triton.jit\ndef _seg_map_kernel(", BACKWARD)
        src = _sub(src, "p11i = _segment_product_prefetched(\n        vb, cols, start, end",
                   "p11i = _segment_product_backward(\n        vb, cols, start, end")
    if "S" in tag:
        src, n = re.subn(r"(tl\.store\((?:grb|gib) \+ o\d, g\d[ri], mask=k\d)\)", r'\1, eviction_policy="evict_first")', src)
        assert n == 8, n
    if "A" in tag:
        src, n = re.subn(r"(tl\.store\(DV \+ o\d, dv\d, mask=k\d)\)", r'\1, eviction_policy="evict_first")', src)
        assert n == 4, n
    path = os.path.join(tempfile.mkdtemp(), f"bk_{tag}.py")
    open(path, "w").write(src)
    spec = importlib.util.spec_from_file_location(f"bk_{tag}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def inputs(B, N, C, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device=device, generator=g))
    h0, z_re = (0.5 * torch.randn(C, device=device, generator=g) for _ in range(2))
    beta = 1.0 + 0.5 * torch.randn(C, device=device, generator=g)
    z_im = 0.05 + 0.5 * torch.rand(C, device=device, generator=g)
    dg = [torch.randn(B, N, C, device=device, generator=g) for _ in range(2)]
    return (v, h0, beta, z_re, z_im), dg


def fwd_bwd(mod, p, dg, reverse=False, chunk=None):
    g_re, g_im, carry = mod._sweep(*p, reverse, chunk)
    return (g_re, g_im, *mod._adjoint(*p, carry, g_re, g_im, *dg, reverse, chunk))


def forward(mod, p, reverse=False, chunk=None):
    return mod._sweep(*p, reverse, chunk)


def compare(ref, out):
    return max(((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item() for a, b in zip(ref, out))


TAGS = ("R", "S", "RS", "RSA", "A")

if __name__ == "__main__":
    if sys.argv[1] == "check":
        os.environ.setdefault("TRITON_INTERPRET", "1")
        from kernels.bk_core import triton as landed
        for B, N, C, chunk, rev in ((2, 100, 20, 12, False), (1, 70, 9, 8, True), (2, 64, 16, None, False)):
            p, dg = inputs(B, N, C, "cpu")
            ref = fwd_bwd(landed, p, dg, rev, chunk)
            for tag in TAGS:
                print(f"({B}, {N}, {C}) chunk {chunk} reverse {rev} {tag}: max rel diff "
                      f"{compare(ref, fwd_bwd(variant(tag), p, dg, rev, chunk)):.2e}", flush=True)
        sys.exit(0)
    from bench.tiles import _graph_ms
    from kernels.bk_core import triton as landed
    mods = {"landed": landed} | {t: variant(t) for t in TAGS}
    B, N, C = (int(x) for x in sys.argv[2].split(",")) if len(sys.argv) > 2 else (16, 16384, 64)
    p, dg = inputs(B, N, C, "cuda")
    ref = fwd_bwd(landed, p, dg)
    for t, m in mods.items():
        outs = [fwd_bwd(m, p, dg) for _ in range(3)]
        same = all(all(torch.equal(a, b) for a, b in zip(outs[0], o)) for o in outs[1:])
        print(f"{t}: max rel diff against landed {compare(ref, outs[0]):.2e}, repeatable {same}", flush=True)
    times = {t: dict(fb=[], fwd=[]) for t in mods}
    for rnd in range(3):
        for t, m in mods.items():
            times[t]["fb"].append(_graph_ms(lambda: fwd_bwd(m, p, dg))["ms"])
            times[t]["fwd"].append(_graph_ms(lambda: forward(m, p))["ms"])
    from torch.profiler import ProfilerActivity, profile
    rows = {}
    for t, m in mods.items():
        fwd_bwd(m, p, dg)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fwd_bwd(m, p, dg)
            torch.cuda.synchronize()
        ks = {e.key[:24]: round((getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)) / 5000, 4)
              for e in prof.key_averages() if "kernel" in e.key}
        fb, fw = statistics.median(times[t]["fb"]), statistics.median(times[t]["fwd"])
        rows[t] = dict(fwd_bwd_ms=fb, fwd_ms=fw, reps=times[t], kernels=ks)
        print(f"{t:7s} fwd+bwd {fb:.4f} ms ({32 * p[0].numel() / fb / 1e6:.0f} GB/s by 32 B)  forward {fw:.4f}  "
              f"reps {['%.4f' % x for x in times[t]['fb']]}  kernels {ks}", flush=True)
    env = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT"), shape=[B, N, C])
    json.dump(dict(env=env, rows=rows), open(sys.argv[1], "w"), indent=1)
