"""Result rows and kernel-benchmark files with known content, for the dashboard tests."""

from __future__ import annotations

import itertools

GIB = 2**30
#: the spec defaults of the runs the dashboard tests store (the grid names the model and sequence length)
TINY = {"vocab_size": 256, "d_model": 32, "n_layers": 1, "n_heads": 2, "device": "cpu"}
EVIL = "<script>window.pwned=1</script>"
_ids = itertools.count()


def result_row(
    model: str,
    mode: str = "inference",
    device: str = "cuda",
    seq_len: int = 512,
    status: str = "ok",
    batch: str = "sweep",
    d_model: int = 64,
    budget: float = 0.0,
    precision: str = "pure_fp16",
    **fields,
) -> dict:
    """A row as `phasebench results export --format json` writes it (the fields that matter here)."""
    number = next(_ids)
    config = {
        "model": model,
        "mode": mode,
        "device": device,
        "seq_len": seq_len,
        "batch_size": 1,
        "d_model": d_model,
        "n_layers": 2,
        "vocab_size": 256,
        "precision": precision,
        "vram_budget_gb": budget,
        "steps": 5,
        "seed": 0,
    }
    return {
        "run_id": f"run{number:04d}",
        "batch": batch,
        "batch_id": 1,
        "index": number,
        "model": model,
        "mode": mode,
        "device": device,
        "status": status,
        "stage": "done" if status == "ok" else "forward",
        "error": None,
        "params": 1000,
        "gpu_name": "NVIDIA H200" if device == "cuda" else None,
        "hostname": "vm",
        "git_commit": "abc123",
        "extra": {},
        "config": config,
        "weights_bytes": None,
        "static_bytes": None,
        "peak_bytes": None,
        "activation_bytes": None,
        "logits_bytes": None,
        "tokens_per_s": None,
    } | fields


def sweep_rows() -> list[dict]:
    """transformer and phase8 inference on one GPU at N = 512 .. 4096: phase8 is faster from 2048 and
    smaller from 1024; the transformer runs out of memory at 4096, phase8 goes over its 1 GiB budget there."""
    transformer = {512: (0.4, 1000.0), 1024: (0.6, 900.0), 2048: (0.9, 500.0)}
    phase8 = {512: (0.5, 800.0), 1024: (0.55, 850.0), 2048: (0.6, 700.0), 4096: (1.5, 600.0)}
    rows = [
        result_row("transformer", seq_len=n, budget=1.0, peak_bytes=int(p * GIB), tokens_per_s=t)
        for n, (p, t) in transformer.items()
    ]
    rows.append(result_row("transformer", seq_len=4096, budget=1.0, status="oom", peak_bytes=None))
    rows += [
        result_row("phase8", seq_len=n, budget=1.0, peak_bytes=int(p * GIB), tokens_per_s=t)
        for n, (p, t) in phase8.items()
    ]
    return rows


def timed(median_ms: float) -> dict:
    return {"median_ms": median_ms, "q20_ms": median_ms * 0.9, "q80_ms": median_ms * 1.1}


def kernel_file() -> dict:
    """A bench/kernels.py result: the scan at N = 512 and 1024 (10 MB forward, 20 MB forward + backward),
    ours and two anchors, one skipped; copy bandwidth 4000 GB/s."""

    def row(n: int, triton_ms: float) -> dict:
        return {
            "op": "scan",
            "shape": {"B": 8, "C": 1536, "N": n, "dtype": "float32"},
            "bytes_fwd": 10_000_000 * n // 512,
            "bytes_fwd_bwd": 20_000_000 * n // 512,
            "impls": {
                "triton": {"fwd": timed(triton_ms), "fwd_bwd": timed(4 * triton_ms)},
                "torch_ref": {"fwd": timed(1.0), "fwd_bwd": {"error": "RuntimeError: boom"}},
                "accelerated_scan.triton": {"fwd": timed(0.005), "fwd_bwd": timed(0.02)},
                "accelerated_scan.warp": {"skipped": "--skip-anchors"},
            },
        }

    return {
        "environment": {"gpu": "NVIDIA H200", "driver": "580", "torch": "2.11", "triton": "3.6", "fla": "0.6.0"},
        "device": "cuda",
        "quick": False,
        "copy_bandwidth_Bps": 4e12,
        "rows": [row(512, 0.01), row(1024, 0.01)],
        "not_run": [],
    }
