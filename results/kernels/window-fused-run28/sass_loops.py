"""Run 28's instruction estimate: the SASS loop bodies (sm_90, bf16, head dim 64, window 64, launched aligned) of the
fused backward and of the landed dq and dk/dv kernels -> per loop (instructions, wgmma, spill loads and stores,
MUFU), and the kernel's whole count. Run it on a tree with fused_integration.patch applied:

    python3 results/kernels/window-fused-run28/sass_loops.py TREE
"""

import re
import sys

import torch

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")
from kernels.window_attn import triton as wa  # noqa: E402
from tests.kernels.shared_memory_probe import compile_for, cuobjdump  # noqa: E402


def loops(compiled):
    """(loop bodies found by their backward branches, instructions in the kernel)."""
    ins = []
    for line in cuobjdump(compiled, "-sass").splitlines():
        if m := re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line):
            ins.append((int(m.group(1), 16), m.group(2)))
    found = []
    for addr, text in ins:
        target = re.search(r"0x([0-9a-f]+)", text) if "BRA" in text else None
        if target and int(target.group(1), 16) < addr:
            body = [x for a, x in ins if int(target.group(1), 16) <= a <= addr]
            spills = sum("STL" in x or "LDL" in x for x in body)
            found.append((len(body), sum("MMA" in x for x in body), spills, sum("MUFU" in x for x in body)))
    return found, len(ins)


consts, launch = wa._fused_plan(64, 64, torch.bfloat16, 64, None, None)
print("fused", loops(compile_for(wa._window_bwd_fused_kernel, "bf16", consts, launch, "fp32", 90, aligned=True)))
for fn, consts, launch in wa._split_plan(64, 64, torch.bfloat16, 64, aligned=True):
    print(
        fn.__name__,
        consts["BQ"],
        consts["BK"],
        loops(compile_for(fn, "bf16", consts, launch, "fp32", 90, aligned=True)),
    )
