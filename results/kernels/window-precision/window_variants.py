"""Window-attention backward variants on the H200: c-gradient error at bf16 16K (the GPU test's measure) and
fwd+bwd time at (8, 16, 16384, 64) bf16. Usage (repository root): python3 results/kernels/window-precision/window_variants.py"""
import json, os, sys
import torch, triton.testing
sys.path[:0] = [".", "tests/kernels"]
from test_window_attn_gpu import _all, _inputs
from kernels.window_attn import triton as wa
from kernels.window_attn import window_hyp_attn_ref
orig = wa._cfg
def variant(bm, prec):
    def cfg(d, dv, dtype, window, block_m, block_n, backward=False):
        BD, BDV, b, bn, p = orig(d, dv, dtype, window, block_m, block_n, backward)
        return (BD, BDV, bm, bm, prec) if backward and dtype != torch.float32 else (BD, BDV, b, bn, p)
    return cfg
ins = _inputs(1, 4, 16384, 64, seed=1, dtype=torch.bfloat16)
w = torch.randn(1, 4, 16384, 64, device="cuda")
ref = _all(lambda *a: window_hyp_attn_ref(*a, window=64), [t.float() for t in ins], w)
g = torch.Generator(device="cuda").manual_seed(0)
q, k, v = (torch.randn(8, 16, 16384, 64, device="cuda", generator=g).mul(0.09).bfloat16().requires_grad_() for _ in range(3))
c = (torch.rand(16, device="cuda") + 0.2).requires_grad_(); s = (torch.rand(16, device="cuda") * 2 + 0.5).requires_grad_()
out = []
for bm, prec in ((32, "tf32"), (32, "tf32x3"), (16, "tf32x3"), (16, "tf32"), (32, "bf16x3")):
    wa._cfg = variant(bm, prec)
    row = {"tile": bm, "prec": prec}
    try:
        got = _all(lambda *a: wa.window_hyp_attn_triton(*a, window=64), ins, w)
        row["rel"] = {n: ((a.float() - b.float()).norm() / b.float().norm()).item() for n, a, b in zip(["o", "q", "k", "v", "c", "scale"], got, ref)}
        o = wa.window_hyp_attn_triton(q, k, v, c, s, window=64); do = torch.randn_like(o)
        def fb():
            torch.autograd.backward(wa.window_hyp_attn_triton(q, k, v, c, s, window=64), do)
            for t in (q, k, v, c, s): t.grad = None
        row["fwd_bwd_ms"] = triton.testing.do_bench(fb, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8])
    except Exception as e:  # noqa: BLE001
        row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    print(json.dumps(row), flush=True); out.append(row)
json.dump(out, open(os.environ.get("OUT", "/tmp") + "/window_variants.json", "w"), indent=1)
