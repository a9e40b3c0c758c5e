"""Per-component cost of phase7 / phase8 (and the transformer): forward+backward time and saved bytes.

    python bench/models.py                       # CPU table -> results/models/components-cpu.json
    python bench/models.py --device cuda         # same on a GPU -> results/models/components-cuda.json
    python bench/models.py --device cuda --kernels torch   # PyTorch references on the GPU -> components-cuda-torch.json
    python bench/models.py --param-counts        # exact parameter counts -> results/models/param-counts.md

Model rows run through the orchestrator (`orchestrator.api.run`, one Ray worker per variant, mode
`train_no_optim`, the benchmark job's step time and saved-for-backward bytes); `mixer:` rows are timed
directly in this process.

Each row is one model variant at (B, N) = (1, 2048) by default, d_model 256, 2 layers, 4 heads, V = 256
(a small vocabulary so that the sequence mixers dominate), fp32, gradient checkpointing off (so that
the saved bytes are those of the whole forward). phase8 rows toggle one component against the
default (default-on components off, optional ones on, and the alternative modes). `mixer:` rows time
one block's mixer alone on a (B, N, d) input.

time: median wall-clock seconds of forward + loss + backward over --repeats steps after one warm-up.
saved: bytes of the unique storages autograd saves for backward (torch.autograd.graph.saved_tensors_hooks),
parameters excluded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernels.backend import BACKENDS, backend  # noqa: E402
from models import catalog  # noqa: E402,F401
from models.phase8 import COMPONENTS  # noqa: E402
from models.registry import count_params, get  # noqa: E402
from orchestrator import api  # noqa: E402
from orchestrator.environment import collect  # noqa: E402
from orchestrator.measure import SavedTensorCounter  # noqa: E402

DEFAULT_ON = ("linear_attn", "hyp_ssm", "bk_hyperbolic", "ar_fusion")
OPTIONAL = ("entailment", "homology", "sheaf")


def variants(quick: bool) -> list[tuple[str, str, dict]]:
    rows = [("transformer", "transformer", {}), ("phase7", "phase7", {}), ("phase8", "phase8 (defaults)", {})]
    for flag in DEFAULT_ON:
        off = {flag: False}
        if flag == "linear_attn":
            off["bk_hyperbolic"] = False
        rows.append(("phase8", f"phase8 -{flag}" + (" -bk_hyperbolic" if flag == "linear_attn" else ""), off))
    rows.append(("phase8", "phase8 all extensions off", {c: False for c in COMPONENTS}))
    for flag in OPTIONAL:
        rows.append(("phase8", f"phase8 +{flag}", {flag: True}))
    rows.append(("phase8", "phase8 lin_attn_mode=exact", {"lin_attn_mode": "exact"}))
    if not quick:
        rows.append(("phase8", "phase8 hyp_ssm_mode=mobius", {"hyp_ssm_mode": "mobius"}))
    return rows


def saved_bytes_of(fn, params) -> int:
    counter = SavedTensorCounter(exclude=params)
    with counter.hooks():
        fn()
    return counter.nbytes


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fwd_bwd(fn, params, device: str, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        for p in params:
            p.grad = None
        sync(device)
        start = time.perf_counter()
        fn().backward()
        sync(device)
        if i:  # the first run is a warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_rows(args) -> list[dict]:
    """Every model variant as one run of a phasebench batch (mode train_no_optim: forward + loss +
    backward), measured by the orchestrator's benchmark job in its own Ray worker."""
    base = dict(
        vocab_size=256,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        grad_checkpoint=False,
        precision="fp32",
        mode="train_no_optim",
        batch_size=args.batch,
        seq_len=args.seq_len,
        device=args.device,
        warmup_steps=1,
        steps=args.repeats,
        timeout_s=1800,
        kernels=args.kernels,
    )
    rows = variants(args.quick)
    spec = {"name": "component-cost", "defaults": base, "cases": [{"model": name, **knobs} for name, _, knobs in rows]}
    db = args.db or f"sqlite:///{tempfile.mkdtemp()}/components.db"
    outcome = api.run(spec, db=db, rerun=True, max_parallel=1)
    results = {r["index"]: r for r in api.results(db=db, batch=[str(outcome.batch_id)])}
    out = []
    for i, (name, label, knobs) in enumerate(rows):
        r = results[i]
        if r["status"] != "ok":
            raise SystemExit(f"{label}: {r['status']}: {r['error']}")
        out.append(
            dict(
                row=label,
                model=name,
                knobs=knobs,
                params=r["params"],
                seconds=r["step_time_median_s"],
                saved_bytes=r["saved_tensor_bytes"],
                run_id=r["run_id"],
            )
        )
    return out


def mixer_rows(args) -> list[dict]:
    from models.phase8 import Phase8Block

    config = get("phase8").make_config(
        dict(
            vocab_size=256,
            d_model=args.d_model,
            n_layers=1,
            n_heads=args.heads,
            entailment=True,
            homology=True,
            sheaf=True,
        )
    )
    torch.manual_seed(0)
    block = Phase8Block(config).to(args.device)
    x = torch.randn(args.batch, args.seq_len, args.d_model, device=args.device)
    g_re = torch.rand(args.batch, args.seq_len, config.channels, device=args.device)
    parts = {
        "bk_gate (BK-Core + gate)": lambda h: block.bk_gate(h)[0],
        "window hyperbolic attention": block.local,
        "ar_ssm": block.glob,
        "ar_ssm + ar_fusion": lambda h: block.glob(h, block.fusion),
        "linear attention + bk_hyperbolic gate": lambda h: block.lin_attn(h, value_gate=block.bk_hyp(g_re, g_re)),
        "hyp_ssm": block.hyp_ssm,
        "sheaf": block.sheaf,
        "entailment": block.entailment,
        "homology": block.homology,
        "ffn": block.ffn,
    }
    rows = []
    for label, fn in parts.items():
        h = x.clone().requires_grad_(True)
        params = list(block.parameters()) + [h]

        def run(fn=fn, h=h):
            return fn(h).float().square().mean()

        saved = saved_bytes_of(run, list(block.parameters()))
        seconds = time_fwd_bwd(run, params, args.device, args.repeats)
        rows.append(
            dict(
                row=f"mixer: {label}",
                model="phase8 block part",
                knobs={},
                params=None,
                seconds=seconds,
                saved_bytes=saved,
            )
        )
    return rows


def environment(args) -> dict:
    env = collect(args.device)
    env.update(
        torch_threads=torch.get_num_threads(),
        kernels_backend=args.kernels,
        date=datetime.datetime.now().isoformat(timespec="seconds"),
    )
    return env


def param_counts(out_dir: pathlib.Path) -> None:
    lines = [
        "# Exact parameter counts (phase7 / phase8)",
        "",
        "Produced by `python bench/models.py --param-counts`; `estimate_params` equals the exact count",
        "(`count_params(build_on_meta(config))`) for every row, checked below and in tests/models.",
        "",
        "| model | config | exact | estimate |",
        "|---|---|---:|---:|",
    ]
    seeds = dict(vocab_size=50257, embed_rank_ratio=0.25, ffn_rank_ratio=0.125)
    configs = [
        (
            f"seed {label}: d={d}, L={layers}, H={d // 128}, V=50257, r_e=1/4, r_f=1/8",
            dict(seeds, d_model=d, n_layers=layers, n_heads=d // 128),
        )
        for label, d, layers in (("Maximum", 4096, 32), ("Large", 3072, 48), ("Deep", 2048, 64), ("Standard", 2048, 48))
    ]
    configs += [
        ("quickstart: d=64, L=2, H=4, V=256", dict(vocab_size=256, d_model=64, n_layers=2, n_heads=4)),
        (
            "learning test: d=128, L=4 (phase8 L=3), H=4, V=256",
            dict(vocab_size=256, d_model=128, n_layers=4, n_heads=4),
        ),
    ]
    for label, knobs in configs:
        for name in ("phase7", "phase8"):
            k = dict(knobs)
            if label.startswith("learning") and name == "phase8":
                k["n_layers"] = 3
            entry = get(name)
            config = entry.make_config(k)
            exact = count_params(entry.build_on_meta(config))
            estimate = entry.estimate_params(config)
            assert exact == estimate, (name, label)
            lines.append(f"| {name} | {label} | {exact:,} | {estimate:,} |")
    for label, extra in (
        ("phase8 + entailment + homology + sheaf, seed Standard", dict(entailment=True, homology=True, sheaf=True)),
        ("phase8 all extensions off, seed Standard", {c: False for c in COMPONENTS}),
        ("phase8 HTT embedding, tied head, seed Standard", dict(embedding="htt", tie_head=True)),
    ):
        entry = get("phase8")
        config = entry.make_config(dict(seeds, d_model=2048, n_layers=48, n_heads=16, **extra))
        exact = count_params(entry.build_on_meta(config))
        assert exact == entry.estimate_params(config)
        lines.append(f"| phase8 | {label} | {exact:,} | {entry.estimate_params(config):,} |")
    (out_dir / "param-counts.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave torch's default)")
    ap.add_argument("--quick", action="store_true", help="skip the sequential hyp_ssm_mode=mobius row")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "results" / "models")
    ap.add_argument("--param-counts", action="store_true", help="only write param-counts.md")
    ap.add_argument(
        "--kernels",
        default="auto",
        choices=BACKENDS,
        help="Triton kernels or PyTorch references (auto: Triton on CUDA)",
    )
    ap.add_argument("--db", help="result database for the model rows (default: a temporary SQLite file)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.param_counts:
        param_counts(args.out)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = model_rows(args)
    with backend(args.kernels):
        rows += mixer_rows(args)
    print(f"{'row':48s} {'params':>10s} {'fwd+bwd s':>10s} {'saved MiB':>10s}")
    for r in rows:
        params = f"{r['params']:,}" if r["params"] is not None else ""
        print(f"{r['row']:48s} {params:>10s} {r['seconds']:10.4f} {r['saved_bytes'] / 2**20:10.2f}")
    result = dict(
        command="python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
        setup=dict(
            device=args.device,
            batch=args.batch,
            seq_len=args.seq_len,
            d_model=args.d_model,
            n_layers=args.layers,
            n_heads=args.heads,
            vocab_size=256,
            precision="fp32",
            grad_checkpoint=False,
            repeats=args.repeats,
            kernels=args.kernels,
        ),
        environment=environment(args),
        rows=rows,
    )
    suffix = "" if args.kernels == "auto" else f"-{args.kernels}"
    path = args.out / f"components-{args.device}{suffix}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
