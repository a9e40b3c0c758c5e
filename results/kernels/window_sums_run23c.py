"""Run 23c (not yet run to the end): window attention fwd+bwd from CUDA graphs, (8, 16, N, 64) bf16, window 64: this
tree (each head's last dk/dv program sums the partials; no reduction kernel) against the tree before, whose
kernels/window_attn/triton.py (dc427d3) is BASE with its ops renamed phasebench_base::, and flex_attention
(dot-product, compiled), 3 interleaved rounds, median; then both trees' kernels at 2K.
Usage: PYTHONPATH=. python3 results/kernels/window_sums_run23c.py BASE OUT.json"""
import importlib.util, json, os, statistics, sys
import torch
from bench.kernels import FLEX_DOT, _fwd_bwd, time_fn, window_flex_anchors, profile_kernels
from kernels.window_attn.triton import window_hyp_attn_triton

spec = importlib.util.spec_from_file_location("wa_base", sys.argv[1])
base = importlib.util.module_from_spec(spec); spec.loader.exec_module(base)
rows = []
for n in (2048, 4096, 16384):
    torch.manual_seed(0)
    B, H, D, window = 8, 16, 64, 64
    q, k = ((torch.randn(B, H, n, D, device="cuda") * 0.7 / D**0.5).to(torch.bfloat16).requires_grad_() for _ in range(2))
    v = torch.randn(B, H, n, D, device="cuda", dtype=torch.bfloat16).requires_grad_()
    c = (torch.rand(H, device="cuda") + 0.2).requires_grad_()
    s = (torch.rand(H, device="cuda") + 0.5).requires_grad_()
    ins = (q, k, v, c, s)
    flex_fn, flex_ins = window_flex_anchors(q, k, v, c, s, window)[FLEX_DOT]
    runs = {"new": _fwd_bwd(lambda: window_hyp_attn_triton(q, k, v, c, s, window), ins),
            "base": _fwd_bwd(lambda: base.window_hyp_attn_triton(q, k, v, c, s, window), ins),
            "flex": _fwd_bwd(flex_fn, flex_ins)}
    ref = {}
    for name in ("new", "base"):
        leaves = [t.detach().clone().requires_grad_() for t in ins]  # not ins: keep their autograd nodes uncreated
        out = (window_hyp_attn_triton if name == "new" else base.window_hyp_attn_triton)(*leaves, window)
        torch.autograd.backward(out, torch.ones_like(out))
        ref[name] = [t.grad for t in leaves]
        del out, leaves
    diff = [((a.float() - b.float()).abs().max() / b.float().abs().max()).item() for a, b in zip(ref["new"], ref["base"])]
    times = {name: [] for name in runs}
    for rnd in range(3):
        for name, fn in runs.items():
            times[name].append(time_fn(fn, "cuda", graph=True)["median_ms"])
    med = {name: statistics.median(t) for name, t in times.items()}
    rows.append(dict(N=n, ms=med, reps=times, grad_rel_diff_new_vs_base=diff))
    print(f"N={n}: new {med['new']:.4f}  base {med['base']:.4f}  flex {med['flex']:.4f} ms fwd+bwd;"
          f" new/flex {med['new'] / med['flex']:.3f}x  base/flex {med['base'] / med['flex']:.3f}x  new/base {med['new'] / med['base']:.4f}"
          f"  grads new vs base (rel) {['%.1e' % d for d in diff]}", flush=True)
    if n == 2048:
        for name, fn in (("new", window_hyp_attn_triton), ("base", base.window_hyp_attn_triton)):
            prof = profile_kernels(lambda fn=fn: fn(q, k, v, c, s, window), ins)
            print(name, prof, flush=True)
            rows[-1]["profile_" + name] = prof
json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows,
               commit=os.environ.get("PHASEBENCH_GIT_COMMIT")), open(sys.argv[2], "w"), indent=1)
