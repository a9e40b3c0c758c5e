"""Run 27a: the forward (segment maps, carry scan, sweep) of one variant, eager, for ncu's DRAM and L2 counters of
the sweep (ncu --cache-control none keeps L2 between the kernels).  python3 ncu_sweep.py TAG [B,N,C]"""
import sys
import torch
import bk_l2_run27a as X

tag = sys.argv[1]
B, N, C = (int(x) for x in sys.argv[2].split(",")) if len(sys.argv) > 2 else (16, 16384, 64)
if tag == "landed":
    from kernels.bk_core import triton as mod
else:
    mod = X.variant(tag)
p, dg = X.inputs(B, N, C, "cuda")
for _ in range(3):
    X.forward(mod, p)
torch.cuda.synchronize()
