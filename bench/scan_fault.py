"""Which diagonal scan faults at a given N: each implementation, eager and replayed from a CUDA graph, alone in
a process of its own with CUDA_LAUNCH_BLOCKING=1, so a fault is reported by the launch that made it.

    python bench/scan_fault.py --sizes 1024,2048 --out results/kernels/scan_fault_h200

The inputs, the fwd+bwd and the graph timing are bench/kernels.py's (`case_scan`, `_fwd_bwd`, `time_fn`), so a
case here is the case that faulted there. Implementations: triton (autotuned, the default), triton_fixed
(256 positions x 4 rows a program, no autotuning), torch_ref, accelerated_scan.triton. Prints one line per case
(ok with the graph's median ms, or the child's exit code and its last stderr line); writes OUT.json (cases,
environment, command) after every case. `--device cpu --quick` runs the same path on tiny shapes (tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(ROOT))

IMPLS = ["triton", "triton_fixed", "torch_ref", "accelerated_scan.triton"]
MODES = ["eager", "graph"]


def run_child(impl: str, mode: str, n: int, device: str, quick: bool) -> None:
    """One case in this process: three eager fwd+bwd calls, or the graph timing of bench/kernels.py (on CPU,
    its plain timing)."""
    import torch

    from bench import kernels as bench_kernels
    from kernels.scan.triton import diag_scan_triton

    bench_kernels.SKIP_ANCHORS = frozenset({"accelerated_scan.warp"})
    _, impls, anchors, inputs, _, _ = bench_kernels.case_scan(n, device, torch.float32, quick)
    a, b = inputs
    impls["triton_fixed"] = lambda: diag_scan_triton(a, b, block_t=256, block_r=4)
    fn = {**impls, **anchors}[impl]
    if isinstance(fn, str):
        sys.exit(f"{impl}: {fn}")
    run = bench_kernels._fwd_bwd(fn, inputs)
    if mode == "eager":
        for _ in range(3):
            run()
        bench_kernels._sync(device)
        print(json.dumps({"ok": True}))
    else:
        print(json.dumps({"ok": True, "graph_ms": bench_kernels.time_fn(run, device, quick, graph=True)["median_ms"]}))


def run_case(impl: str, mode: str, n: int, args) -> dict:
    """The case in a child process: {impl, mode, N, ok, graph_ms?, rc?, error?}."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--device", args.device, "--child", impl, mode, str(n)]
    cmd += ["--quick"] if args.quick else []
    env = os.environ | {"CUDA_LAUNCH_BLOCKING": "1"}
    case = {"impl": impl, "mode": mode, "N": n}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        return case | {"ok": False, "error": f"timed out after {args.timeout_s:g} s"}
    if proc.returncode == 0:
        return case | json.loads(proc.stdout.strip().splitlines()[-1])
    lines = proc.stderr.strip().splitlines() or ["(no stderr)"]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return case | {"ok": False, "rc": proc.returncode, "error": (errors or lines)[-1][-300:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1024", help="comma list of N")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma list of {IMPLS}")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="bench/kernels.py's tiny shapes (2, 8, N): tests")
    p.add_argument("--timeout-s", type=float, default=120.0, help="per case")
    p.add_argument("--out", default=str(ROOT / "results/kernels/scan_fault"), help="OUT.json is written")
    p.add_argument("--child", nargs=3, metavar=("IMPL", "MODE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        impl, mode, n = args.child
        run_child(impl, mode, int(n), args.device, args.quick)
        return 0
    from bench.kernels import environment

    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        p.error(f"--impls: unknown {unknown}; choose from {IMPLS}")
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes: a comma list of positive integers (got {args.sizes!r})")
    if min(sizes) < 1:
        p.error(f"--sizes: a comma list of positive integers (got {args.sizes!r})")
    result = {"environment": environment(argv if argv is not None else sys.argv[1:], args.device), "cases": []}
    for n in sizes:
        for impl in impls:
            for mode in MODES:
                case = run_case(impl, mode, n, args)
                result["cases"].append(case)
                what = f"ok {case['graph_ms']:.4f} ms" if "graph_ms" in case else "ok" if case["ok"] else case["error"]
                print(f"N={n:<6} {impl:<24} {mode:<6} {what}", flush=True)
                Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
