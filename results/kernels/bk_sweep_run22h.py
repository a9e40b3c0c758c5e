"""BK-Core two-pass fwd+bwd from CUDA graphs under segment lengths, at the target's shape and two model shapes
(channels = heads); the plan's choice first."""
import torch
from bench.tiles import _graph_ms
from kernels.bk_core import triton as bk

def inputs(B, N, C):
    g = torch.Generator(device="cuda").manual_seed(0)
    v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device="cuda", generator=g))
    h0, z_re = (0.5 * torch.randn(C, device="cuda", generator=g) for _ in range(2))
    beta = 1.0 + 0.5 * torch.randn(C, device="cuda", generator=g)
    z_im = 0.05 + 0.5 * torch.rand(C, device="cuda", generator=g)
    return v, h0, beta, z_re, z_im, [torch.randn(B, N, C, device="cuda", generator=g) for _ in range(2)]

for shape, chunks in (((16, 16384, 64), (None, 128, 256, 512)), ((1, 16384, 16), (None, 64, 128, 256, 512)),
                      ((16, 2048, 16), (None, 64, 128, 256)), ((8, 4096, 32), (None, 64, 128, 256))):
    v, h0, beta, z_re, z_im, dg = inputs(*shape)
    for chunk in chunks:
        def call(chunk=chunk):
            g_re, g_im, carry = bk.bk_core_fwd(v, h0, beta, z_re, z_im, False, chunk)
            return bk.bk_core_bwd(v, h0, beta, z_re, z_im, carry, g_re, g_im, *dg, False, chunk)
        plan = bk._plan(*shape, chunk)[2:]
        print(f"{shape} chunk {chunk or 'plan'} (L, S) {plan}: {_graph_ms(call)}", flush=True)
