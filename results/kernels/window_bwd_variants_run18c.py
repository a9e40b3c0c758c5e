# Run 18c (results/kernels/README.md): the exact script as run, .gpu/bwd_variants.py then (not a maintained tool;
# bench/tiles.py --op window_attn --kinds regs sweeps the register caps since). Run from the repository root:
#   python3 THIS base 16384 2048       (the tree before; saves its outputs as the reference in /tmp)
#   python3 THIS v1_bf16_dq 16384 2048 (the tree after, in the same machine session)
"""Window backward (two kernels) from CUDA graphs, (8, 16, N, 64) bf16, window 64, with launch variants:
python3 .gpu/bwd_variants.py TAG N..."""
import json
import sys

import torch

sys.path.insert(0, ".")
from bench.tiles import _graph_ms, _randn, swapped  # noqa: E402

import os  # noqa: E402

if os.environ.get("VARIANT"):
    sys.path.insert(0, os.environ["VARIANT"])
from kernels.window_attn import triton as wt  # noqa: E402

tag, sizes = sys.argv[1], [int(a) for a in sys.argv[2:]]
print(tag, wt.__file__, flush=True)
DEV = os.environ.get("DEV", "cuda")
if DEV != "cuda":  # a smoke test off the GPU: time nothing
    _graph_ms = lambda fn: (fn(), {"ms": 0.0})[1]  # noqa: E731
B, H, D = (8, 16, 64) if DEV == "cuda" else (1, 2, 64)
out = []
for n in sizes:
    g = torch.Generator(device=DEV).manual_seed(0)
    c = torch.rand(H, device=DEV, generator=g) + 0.2
    q, k = (_randn(B, H, n, D, g=g, scale=0.7 / D**0.5) for _ in range(2))
    v, s = _randn(B, H, n, D, g=g), torch.rand(H, device=DEV, generator=g) + 0.5
    o, lse, x, y = wt._launch_fwd(q, k, v, c, s, 64, None, None)
    do = _randn(*o.shape, g=g)
    call = lambda: wt._launch_bwd(do, o, q, k, x, y, v, c, s, lse, 64, None, None)  # noqa: E731
    ref = [t.float().clone() for t in call()]
    saved = f"/tmp/bwd_ref_{n}.pt"
    if os.path.exists(saved):  # the main tree's outputs, from an earlier run of this script
        ref = torch.load(saved)
    else:
        torch.save(ref, saved)
    dq0, dk0 = wt._dq_launch, wt._dkdv_launch
    variants = {"base": {}}
    for r in (168,):
        variants[f"dq maxnreg {r}"] = {"_dq_launch": lambda *a, r=r: dq0(*a) | {"maxnreg": r}}
        variants[f"dkdv maxnreg {r}"] = {"_dkdv_launch": lambda *a, r=r: dk0(*a) | {"maxnreg": r}}
    variants["both maxnreg 168"] = {
        "_dq_launch": lambda *a: dq0(*a) | {"maxnreg": 168},
        "_dkdv_launch": lambda *a: dk0(*a) | {"maxnreg": 168},
    }
    for name, patch in variants.items():
        def fn(patch=patch):
            ctx = [swapped(wt, k_, v_) for k_, v_ in patch.items()]
            for cm in ctx:
                cm.__enter__()
            try:
                return call()
            finally:
                for cm in reversed(ctx):
                    cm.__exit__(None, None, None)
        res = _graph_ms(fn)
        got = fn() if "ms" in res else None
        if got is not None:
            res["rel"] = [round(((a.float() - b).norm() / b.norm()).item(), 6) for a, b in zip(got, ref)]
        row = {"tag": tag, "N": n, "variant": name, **res}
        out.append(row)
        print(row, flush=True)
print(json.dumps(out))
