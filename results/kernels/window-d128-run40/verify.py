"""Run 40b (thirty-fourth session): the launchers' head-dim-128 choice from run 40's sweep (kernels/window_attn/
triton.py _big, _split_tiles: 16-bit, N a multiple of 16: forward 64 x 32, dk/dv 16 x 64, dq 64 x 32, 4 warps, 2
stages) against the one it replaced (32 x 32 at 8 warps everywhere) and flex_attention (dot-product scores, same
window), fwd+bwd from CUDA graphs at (8, 16, N, 128) bf16, window 64, 3 interleaved rounds, median (run 35's
timers); `check`: the gradients of both choices against each other.

    python3 verify.py check
    python3 verify.py OUT.json [N,...]
"""

import functools
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "results", "kernels", "window-rows-run35"))
import window_rows_run35 as run35  # noqa: E402

W = run35.W
run35.inputs = functools.partial(run35.inputs, D=128)
BEFORE = "32 x 32, 8 warps (before)"
run35.LANDED = "run 40's tiles (landed)"
run35.VARIANTS = {
    BEFORE: (W._rows_by_dot, W.DQ_MAXNREG),
    run35.LANDED: (W._rows_by_dot, W.DQ_MAXNREG),
}
_variant = run35.variant


def variant(name):
    """run 35's variant, with the launchers' choice before run 40 swapped in for BEFORE."""
    if name != BEFORE:
        return _variant(name)
    stack = run35.contextlib.ExitStack()
    stack.enter_context(_variant(name))
    old_big = lambda BD, BDV, fp32, aligned=True: fp32 or max(BD, BDV) > 64  # noqa: E731
    stack.enter_context(run35.swapped(W, "_big", old_big))
    return stack


run35.variant = variant

if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: verify.py check | profile | OUT.json [N,...]", file=sys.stderr)
        sys.exit(2)
    if sys.argv[1] == "check":
        import torch

        ins = run35.inputs(2048)
        fn = functools.partial(W.window_hyp_attn_triton, *ins, 64)
        found = {}
        for name in run35.VARIANTS:
            with variant(name):
                found[name] = run35.grads(ins, fn)
        rel = [((a.float() - b.float()).norm() / b.float().norm()).item() for a, b in zip(*found.values(), strict=True)]
        print(f"q, k, v, c, scale gradients, {run35.LANDED} against {BEFORE}: relative {rel}")
        assert max(rel) < 2e-2, rel
        torch.cuda.synchronize()
    elif sys.argv[1] == "profile":
        from bench.kernels import FLEX_DOT, profile_kernels, window_flex_anchors

        for n in (2048, 16384):
            ins = run35.inputs(n)
            flex_fn, flex_ins = window_flex_anchors(*ins, 64)[FLEX_DOT]
            ours = functools.partial(W.window_hyp_attn_triton, *ins, 64)
            for name, fn, args in ((run35.LANDED, ours, ins), ("flex_attention", flex_fn, flex_ins)):
                print(f"N {n}, {name}: the kernels of one fwd+bwd call (eager, 3 calls)", flush=True)
                for k in profile_kernels(fn, args):
                    print(f"  {k['share']:6.1%} {k['ms_per_step']:9.4f} ms {k['calls_per_step']:4.0f}x  {k['name'][:90]}")
    else:
        run35.main(sys.argv)
