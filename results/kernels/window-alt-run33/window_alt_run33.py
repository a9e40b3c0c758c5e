"""Run 33: the window backward's alternating schedule (kernels/window_attn/triton.py _run_groups) with more groups
than the landed two, fwd+bwd from CUDA graphs at (8, 16, N, 64) bf16, window 64, flex_attention beside, as run
29b's script times and checks them (window_pipe_run29b.main). Run 32 found run 29b's pipelined schedule slower at
every group count: its dk/dv kernels wait on their dq kernels. Here every group is independent, as in the landed
schedule; only their count changes (3, 4 and 8: the two streams each take every other group).

    python3 window_alt_run33.py check
    python3 window_alt_run33.py OUT.json [N,...]
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "window-groups-run29"))
from window_pipe_run29b import landed, main  # noqa: E402

VARIANTS = {f"alternating {count}" if count > 1 else "one group": (landed, count) for count in (1, 2, 3, 4, 8)}

if __name__ == "__main__":
    main(sys.argv, VARIANTS)
