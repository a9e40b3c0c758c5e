"""Run 38 (prepared in the thirty-second session): the window backward's identity-product reload at head dim 128,
where `_rows_by_dot` keeps the plain reload. Compiled for sm_90 with triton 3.6 (the GPUs' version) at bf16, head
dim 128, aligned, the identity product took the dk/dv kernel from 2,744 SASS instructions to 2,536 and 65 barriers
to 47, the dq kernel from 2,856 to 2,664 and 93 barriers to 68, with no spill either way; triton 3.9 spilled 144
and 24 bytes with it, which is why head dim 128 kept the plain reload (`counts128.txt` beside this file). Run 35's
script with head dim 128 and these two variants: the gradients of both, then fwd+bwd from CUDA graphs at
(8, 16, N, 128) bf16, window 64, flex_attention beside, 3 interleaved rounds, median.

    python3 window_rows_run38.py check
    python3 window_rows_run38.py OUT.json [N,...]
"""

import functools
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "window-rows-run35"))
import window_rows_run35 as run35  # noqa: E402

W = run35.W
run35.inputs = functools.partial(run35.inputs, D=128)
run35.LANDED = "plain reload"  # what _rows_by_dot picks at head dim 128
run35.VARIANTS = {
    "plain reload": (W._rows_by_dot, W.DQ_MAXNREG),
    "identity product": (lambda BD, BDV, fp32: True, W.DQ_MAXNREG),
}

if __name__ == "__main__":
    run35.main(sys.argv)
