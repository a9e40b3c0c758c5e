"""BK-Core two-pass fwd+bwd at (16, 16384, 64) fp32 from CUDA graphs under segment lengths and the two carry
scans' tiles (channels a program, warps): the default first."""
import sys
import torch
from bench.tiles import _graph_ms, swapped
from kernels.bk_core import triton as bk

B, N, C = 16, 16384, 64
g = torch.Generator(device="cuda").manual_seed(0)
v = 5.0 * torch.tanh(2.0 * torch.randn(B, N, C, device="cuda", generator=g))
h0, z_re = (0.5 * torch.randn(C, device="cuda", generator=g) for _ in range(2))
beta = 1.0 + 0.5 * torch.randn(C, device="cuda", generator=g)
z_im = 0.05 + 0.5 * torch.rand(C, device="cuda", generator=g)
dg = [torch.randn(B, N, C, device="cuda", generator=g) for _ in range(2)]

def fb(chunk):
    def call():
        g_re, g_im, carry = bk.bk_core_fwd(v, h0, beta, z_re, z_im, False, chunk)
        return bk.bk_core_bwd(v, h0, beta, z_re, z_im, carry, g_re, g_im, *dg, False, chunk)
    return call

default = bk._carry_blocks
ref = fb(None)()
rows = []
for chunk in (None, 32, 128):
    for tiles in (None, (1, 1), (1, 2), (1, 4), (2, 2), (2, 4), (4, 8), (8, 4)):
        def blocks(S, block_c, tiles=tiles):
            if tiles is None:
                return default(S, block_c)
            block_s = max(2, 1 << (S - 1).bit_length())
            return block_s, tiles[0], tiles[1]
        with swapped(bk, "_carry_blocks", blocks):
            call = fb(chunk)
            out = call()
            err = max((a - b).abs().max().item() / max(b.abs().max().item(), 1e-9) for a, b in zip(out, ref))
            res = _graph_ms(call)
        print(f"chunk {chunk or 'plan'} carry {tiles or 'default'}: {res}, rel err {err:.1e}", flush=True)
