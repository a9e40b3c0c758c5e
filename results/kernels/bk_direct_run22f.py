"""Host time of BK-Core fwd+bwd: through the torch.library custom ops (as shipped) against the same functions
through a plain autograd.Function (no custom-op dispatch), at (1, 256, 64) (host-bound) and eager at
(16, 16384, 64) (triton.testing.do_bench)."""
import sys, time
import torch, triton
from kernels.bk_core import triton as bk

class Direct(torch.autograd.Function):
    @staticmethod
    def forward(v, h0, beta, z_re, z_im, reverse, chunk):
        return bk._sweep(v, h0, beta, z_re, z_im, reverse, chunk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        bk._bk_core_fwd_setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, dg_re, dg_im, _dc):
        v, h0, beta, z_re, z_im, g_re, g_im, carry = ctx.saved_tensors
        dg_re, dg_im = (torch.zeros_like(g_re) if d is None else d.float().contiguous() for d in (dg_re, dg_im))
        dv, grads = bk._adjoint(v, h0, beta, z_re, z_im, carry, g_re, g_im, dg_re, dg_im, ctx.reverse, ctx.chunk)
        return dv, *grads.unbind(), None, None

def op_path(v, h0, beta, z_re, z_im):
    return bk.bk_core_fwd(v, h0, beta, z_re, z_im, False, None)[:2]

def direct_path(v, h0, beta, z_re, z_im):
    return Direct.apply(v, h0, beta, z_re, z_im, False, None)[:2]

def make(shape):
    x = [torch.randn(*shape, device="cuda"), *(torch.rand(shape[-1], device="cuda") + 0.5 for _ in range(4))]
    return [t.requires_grad_() for t in x], torch.randn(*shape, device="cuda")

for shape in ((1, 256, 64), (16, 16384, 64)):
    x, w = make(shape)
    ref = None
    for name, f in (("custom op", op_path), ("direct", direct_path)):
        def step():
            g_re, g_im = f(*x)
            torch.autograd.grad((g_re * w).sum() + g_im.sum(), x)
        grads = torch.autograd.grad(sum(t.sum() for t in f(*x)), x)
        if ref is None:
            ref = grads
        same = all(torch.equal(a, b) for a, b in zip(grads, ref))
        for _ in range(20):
            step()
        torch.cuda.synchronize()
        if shape[0] == 1:
            reps = []
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(200):
                    step()
                torch.cuda.synchronize()
                reps.append((time.perf_counter() - t) / 200 * 1e6)
            print(f"{shape} {name:10s} host {sorted(reps)[2]:7.1f} us a fwd+bwd (min {min(reps):.1f}), grads equal: {same}")
        else:
            ms = [triton.testing.do_bench(step, warmup=25, rep=200) for _ in range(3)]
            print(f"{shape} {name:10s} eager {sorted(ms)[1]:.4f} ms a fwd+bwd ({', '.join(f'{m:.4f}' for m in ms)}), grads equal: {same}")
