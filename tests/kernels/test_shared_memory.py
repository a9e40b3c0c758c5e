"""Every attention and Poincare kernel, tiled as its launcher tiles it, fits in the shared memory per block of
an A100 (sm_80), of an L4 / L40 (sm_89) and of an H200 (sm_90) at the head dims the models use; the window
backward and the two-pass BK-Core keep their registers on the H200 (no spill to local memory beyond what was
measured to pay); the scan's autotuner keeps its choices on disk.

The kernels are compiled for each architecture on this CPU machine (shared_memory_probe.py, in a process
without TRITON_INTERPRET) and the compiler's figure is checked against the architecture's opt-in limit. The
8 GB study met the limit on the H200: float32 linear attention at head dim 320 asked for 540,672 bytes
(OutOfResources). Float32 tiles are narrower since (half the value width, chunks of 32), so that every
kernel fits an sm_89 at the model head dims; at 320 the forward still asks for more than an H200 has (266,240
bytes with triton 3.9), and such heads take the PyTorch reference.

The same compile, with the float scalars typed float64, is what `compile: true` asks of the kernels:
inductor passes Python floats to user Triton kernels as float64, and on the H200 the window kernel failed
("loop-carried variable m_i ... re-assigned to fp64") until the kernels cast them to float32.

Each (kernel, dtype, head dim, arch) is compiled once: head dim 64 with float64 scalars (as torch.compile
passes them), ATTENTION_MAX_HEAD_DIM with float32 ones (as an eager launch passes Python floats). The
scalars' type moves no shared-memory figure (results/kernels/resources-sm*.json hold head dim 64 with
float32 scalars). Triton lowers sm_80 and sm_89 alike (no TMA, no wgmma: the same pipelining and the same
shared-memory figure for every kernel, checked on all 52 rows of the two JSON files), so the sm_89 limit is
checked against the sm_80 compile: a third of the compiles fewer, in a suite near its time limit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kernels.backend import ATTENTION_MAX_HEAD_DIM

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("shared_memory_probe.py")

#: opt-in shared memory per block, bytes (the probe's SHARED_MEMORY_PER_BLOCK_OPTIN, restated to check it)
SHARED_BYTES = {80: 166912, 89: 101376, 90: 232448}
H200_SHARED_BYTES = SHARED_BYTES[90]  # as the H200's OutOfResources error states it
#: the arch whose compile each limit is checked against (sm_89's figures are sm_80's, see above)
COMPILED_FOR = {80: 80, 89: 80, 90: 90}
ARCHS = ",".join(map(str, sorted(set(COMPILED_FOR.values()))))
#: phase8's head dim (d_model / n_heads of the example studies) and the largest the dispatcher admits
#: (the benchmark's); heads in between are padded to the tiles of the larger
HEAD_DIMS = (64, ATTENTION_MAX_HEAD_DIM)
KERNELS_PER_DTYPE = {"window_attn": 3, "poincare": 4}  # linear attention: however many its launch plan has
#: the rows whose registers and spill the tests read (bf16 backwards on the H200): only these go through ptxas,
#: the rest stop at PTX (shared memory and libdevice; the probe's --cubin-for), ~40 % of a compile less
WINDOW_BWD = ("_window_bwd_dkdv_kernel", "_window_bwd_dq_kernel")
#: linear attention's default backward (backward="chunked"), launched with _chunked_cfg's tiles
LA_CHUNKED_BWD = {"_la_bwd_states_kernel", "_la_bwd_chunk_kernel", "_la_bwd_chunk_dv_kernel"}
CUBIN_FOR = {(kernel, "bf16", "90") for kernel in (*WINDOW_BWD, *sorted(LA_CHUNKED_BWD))}


def cubin_for(rows: set[tuple[str, str, str]]) -> str:
    return "--cubin-for=" + ",".join(":".join(row) for row in sorted(rows))


def start(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, str(PROBE), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def rows(proc: subprocess.Popen) -> list[dict]:
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err[-2000:]
    probed = json.loads(out)
    return [row | {"floats": probed["floats"], "stops_at_ptx": probed["stops_at_ptx"]} for row in probed["kernels"]]


@pytest.fixture(scope="module")
def needs() -> list[dict]:
    """Every probed kernel at HEAD_DIMS on each arch, and the study's float32 forward at head dim 320 (sm_90),
    compiled by three probes at once, the two large ones on half the CPUs each (the compiles take minutes)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    jobs = str(max(1, cpus // 2))
    procs = [
        start("--only", "_la_fwd_kernel:fp32", cubin_for(set()), "320"),
        start(
            "--arch", ARCHS, "--floats", "fp64", "--poincare", cubin_for(CUBIN_FOR), "--jobs", jobs, str(HEAD_DIMS[0])
        ),
        start("--arch", ARCHS, "--poincare", cubin_for(CUBIN_FOR), "--jobs", jobs, str(HEAD_DIMS[1])),
    ]
    try:
        return [row for proc in procs for row in rows(proc)]
    finally:  # one failed: the others are not waited for
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def key(n: dict) -> tuple[str, str, int, int]:
    return n["kernel"], n["dtype"], n["head_dim"], n["arch"]


def at_model_dims(needs: list[dict]) -> list[dict]:
    return [n for n in needs if n["head_dim"] in HEAD_DIMS]


def on(needs: list[dict], arch: int) -> list[dict]:
    """The model-dim rows whose compile stands for `arch`, keyed with `arch` itself."""
    return [n | {"arch": arch} for n in at_model_dims(needs) if n["arch"] == COMPILED_FOR[arch]]


def test_every_kernel_is_probed_once_per_dtype_head_dim_and_arch_against_its_limit(needs):
    probed = at_model_dims(needs)
    keys = Counter(map(key, probed))
    assert set(keys.values()) == {1}
    kernels_per_cell = Counter((n["op"], n["dtype"], n["head_dim"], n["arch"]) for n in probed)
    assert len(kernels_per_cell) == 3 * 2 * len(HEAD_DIMS) * len(set(COMPILED_FOR.values()))  # op x dtype x dim x arch
    assert all(count == KERNELS_PER_DTYPE.get(cell[0], count) for cell, count in kernels_per_cell.items())
    assert all(n["shared_limit"] == SHARED_BYTES[n["arch"]] for n in probed)
    with_cubin = {(n["kernel"], n["dtype"], str(n["arch"])) for n in probed if n["registers"] is not None}
    assert all((n["registers"] is None) == (n["spill"] is None) for n in probed)
    if all(n["stops_at_ptx"] for n in probed):
        assert with_cubin == CUBIN_FOR
    else:  # a Triton without the stage hook compiles every kernel to a cubin
        assert with_cubin > CUBIN_FOR


@pytest.mark.parametrize("arch", SHARED_BYTES)
def test_kernels_fit_in_shared_memory_at_the_models_head_dims(needs, arch):
    probed = on(needs, arch)
    misfits = {key(n): n["shared"] for n in probed if n["shared"] > SHARED_BYTES[arch]}
    assert not misfits, f"shared bytes above sm_{arch}'s {SHARED_BYTES[arch]:,}: {misfits}"


def test_a_head_dim_of_320_is_still_above_the_h200s_limit(needs):
    fwd = next(n for n in needs if n["head_dim"] == 320 and n["dtype"] == "fp32" and n["kernel"] == "_la_fwd_kernel")
    assert fwd["arch"] == 90 and fwd["shared"] > H200_SHARED_BYTES


def test_every_kernel_compiles_with_float64_scalars_as_torch_compile_passes_them(needs):
    compiled = [n for n in needs if n["floats"] == "fp64"]
    assert {n["op"] for n in compiled} == {"linear_attn", "window_attn", "poincare"}
    assert {n["arch"] for n in compiled} == set(COMPILED_FOR.values())
    assert all(n["head_dim"] == HEAD_DIMS[0] and n["shared"] > 0 for n in compiled)


#: register spill (bytes a thread) each window backward kernel may have on the H200, by head dim, as the probe
#: compiles it: for pointers and sizes of unknown divisibility (triton 3.9, folded tiles without per-entry window
#: tests at window 64). At 64 the launcher's tiles are the fastest timed (32 x 64 dk/dv, 64 x 32 dq, run 16c of
#: results/kernels/runs.md; again with k mapped in the kernels, run 20c): 280 and 168 bytes here since the
#: epilogues reload their rows through the identity product (wa._reload_rows; 280 and 248 before, 680 and 560 when
#: both kernels mapped k, run 21b); compiled as a launch at the benchmark's shapes (shared_memory_probe.py
#: --aligned), the dk/dv kernel spills 56 bytes at 255 registers and the dq kernel, capped at 168 registers there
#: (wa._dq_launch), 112: three programs an SM ran the backward 7.5 % faster than two did (run 18c). 32 x 32
#: spilled nothing and ran 22 % slower. At 128 (32 x 32, no cap, the plain reload): 96 and 288 here (the dq
#: kernel's stores), none aligned.
WINDOW_BWD_SPILL = {
    "_window_bwd_dkdv_kernel": {64: 296, 128: 112},
    "_window_bwd_dq_kernel": {64: 272, 128: 304},
}


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_the_window_backward_spills_no_more_than_measured_on_the_h200(needs, head_dim):
    """The window backward at bf16, tiled and launched as its launcher does (wa._split_plan): its kernels hold a
    key block's dk, dv or a query block's dx in registers."""
    backward = {
        n["kernel"]: n
        for n in needs
        if n["kernel"].startswith("_window_bwd") and (n["dtype"], n["head_dim"], n["arch"]) == ("bf16", head_dim, 90)
    }
    assert set(backward) == set(WINDOW_BWD_SPILL) == set(WINDOW_BWD), backward
    within = {k: n["spill"] <= WINDOW_BWD_SPILL[k][head_dim] and 0 < n["registers"] <= 255 for k, n in backward.items()}
    over = {k: backward[k] for k, ok in within.items() if not ok}
    assert not over, over


#: spill (bytes a thread) of the 16-bit window kernels at head dim 128 compiled as a launch with N a multiple of 16
#: compiles them (--aligned) with run 40's tiles (wa._big; forward 64 x 32, dk/dv 16 x 64, dq 64 x 32, 4 warps), on
#: sm_90 with triton 3.9 as the probe runs here (triton 3.6, which ran run 40: 0, 136, 72)
ALIGNED_128_SPILL = {"_window_fwd_kernel": 0, "_window_bwd_dkdv_kernel": 224, "_window_bwd_dq_kernel": 128}


@pytest.fixture(scope="module")
def aligned_128() -> list[dict]:
    """The 16-bit window kernels at head dim 128 as an aligned launch tiles them, on each arch."""
    only = ",".join(f"{k}:bf16" for k in ALIGNED_128_SPILL)
    cubins = cubin_for({(k, "bf16", "90") for k in ALIGNED_128_SPILL})
    return rows(start("--arch", ARCHS, "--aligned", "--only", only, cubins, str(ATTENTION_MAX_HEAD_DIM)))


@pytest.mark.parametrize("arch", SHARED_BYTES)
def test_the_aligned_16bit_window_at_head_dim_128_fits_and_spills_as_measured(aligned_128, arch):
    probed = {n["kernel"]: n for n in aligned_128 if n["arch"] == COMPILED_FOR[arch]}
    assert set(probed) == set(ALIGNED_128_SPILL)
    misfits = {k: n["shared"] for k, n in probed.items() if n["shared"] > SHARED_BYTES[arch]}
    assert not misfits, f"shared bytes above sm_{arch}'s {SHARED_BYTES[arch]:,}: {misfits}"
    if arch == 90:
        spills = {k: n["spill"] for k, n in probed.items()}
        assert all(spills[k] <= ALIGNED_128_SPILL[k] for k in spills), spills


def test_the_window_kernels_take_the_hardwares_log2(needs):
    """Per pair, the window kernels' log2 is lg2.approx (kernels/fastmath.py), not libdevice's exact __nv_log2f
    (~30 instructions with a branch) that float32 tl.math.log2 inlines: no window kernel inlines the exact one,
    the forward included since its tiles are folded."""
    window = [n for n in needs if n["op"] == "window_attn"]
    assert {n["kernel"] for n in window} >= {"_window_fwd_kernel", "_window_bwd_dkdv_kernel", "_window_bwd_dq_kernel"}
    exact = {n["kernel"] for n in window if "__nv_log2f" in n["libdevice"]}
    assert not exact, exact


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_the_linear_attention_backward_keeps_its_registers(needs, head_dim):
    """The chunk-parallel backward at bf16 spills nothing on the H200 (sm_90): its tiles were chosen among the
    spill-free ones there (la._chunked_cfg; fp16 compiles alike). On sm_80 the 4-warp dq/dk kernel spills 72
    bytes a thread (24 in fp16), likely because sm_80's mma takes both operands from registers where
    sm_90's wgmma can read them from shared memory."""
    backward = {
        n["kernel"]: n
        for n in needs
        if n["kernel"] in LA_CHUNKED_BWD and (n["dtype"], n["head_dim"], n["arch"]) == ("bf16", head_dim, 90)
    }
    assert set(backward) == LA_CHUNKED_BWD
    assert all(n["spill"] == 0 and 0 < n["registers"] <= 255 for n in backward.values()), backward


#: BK-Core's segment kernels (kernels/bk_core/triton.py SEGMENT_KERNELS: the halo kernels and the two-pass ones
#: gated behind them) and the spill (bytes a thread) each may have, by arch: the first adjoint pass holds the next 8
#: rows' 24 loads and runs capped at 64 registers (bk.ADJ_SEG_MAXNREG), where sm_90 spills 32 bytes: uncapped (72
#: registers, 14 programs an SM) it ran 5 % slower at (16, 16384, 64) on an H100 (run 25c of
#: results/kernels/runs.md); the halo adjoint runs at the same cap, which took fwd+bwd from 0.2478 to 0.2317 ms there
#: (run 45c), and spills 8-16 bytes
BK_SEGMENT_SPILL = {
    "_halo_sweep_kernel": {80: 0, 90: 0},
    "_seg_map_kernel": {80: 0, 90: 0},
    "_sweep_kernel": {80: 0, 90: 0},
    "_halo_adj_kernel": {80: 8, 90: 16},
    "_adj_seg_kernel": {80: 0, 90: 32},
    "_adj_sweep_kernel": {80: 0, 90: 0},
}


def test_the_bk_core_segment_kernels_keep_their_registers():
    """The segment kernels as the launchers launch them (64 channels, float32), compiled for sm_80 and
    sm_90: the register cap holds and nothing spills beyond BK_SEGMENT_SPILL."""
    only = ",".join(f"{k}:fp32" for k in BK_SEGMENT_SPILL)
    probed = rows(start("--arch", "80,90", "--bk-core", "--only", only, "64"))
    assert {(n["kernel"], n["arch"]) for n in probed} == {(k, a) for k in BK_SEGMENT_SPILL for a in (80, 90)}
    capped = {n["kernel"]: n["maxnreg"] for n in probed}
    assert capped == {k: 64 if k in ("_adj_seg_kernel", "_halo_adj_kernel") else None for k in BK_SEGMENT_SPILL}
    over = [n for n in probed if n["spill"] > BK_SEGMENT_SPILL[n["kernel"]][n["arch"]]]
    assert not over, over
    assert all(0 < n["registers"] <= (n["maxnreg"] or 255) and n["shared"] <= SHARED_BYTES[n["arch"]] for n in probed)


@pytest.mark.parametrize("op", ["linear_attn", "window_attn", "poincare", "bk_core"])
def test_the_launchers_tile_alike_on_every_gpu(op):
    """The probe tiles each kernel for every arch as its launcher does on a device of that arch; it can do so
    without knowing the device because no launcher reads it. A launcher that came to choose its tiles from
    the device (its properties, capability or shared memory) needs the probe's families to do the same per
    arch; then take this test out for it."""
    source = (ROOT / "kernels" / op / "triton.py").read_text()
    reads = re.findall(r"get_device_properties|get_device_capability|shared_memory_per_block\w*|driver\.active", source)
    assert not reads, f"kernels/{op}/triton.py reads the device ({reads}): make shared_memory_probe.py tile alike"


def test_the_scan_autotuner_caches_its_choice_on_disk():
    """Every run is a fresh process: the scan's tuned blocks persist in Triton's cache directory
    (triton.autotune(cache_results=True), triton >= 3.4), or each run would tune again. Read in a process
    without TRITON_INTERPRET (under it there is no autotuner) nor TRITON_CACHE_AUTOTUNING (which turns the
    cache on for every autotuner)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_CACHE_AUTOTUNING")}
    code = (
        "import inspect, json, triton\n"
        "from kernels.scan import triton as scan\n"
        "tuned = (scan._scan_fwd_tuned, scan._scan_bwd_tuned)\n"
        "print(json.dumps(dict(version=triton.__version__,\n"
        "    supported='cache_results' in inspect.signature(triton.autotune).parameters,\n"
        "    kinds=[type(t).__name__ for t in tuned], keys=[t.keys for t in tuned],\n"
        "    cache=[getattr(t, 'cache_results', None) for t in tuned])))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tuned = json.loads(proc.stdout)
    assert tuned["kinds"] == ["Autotuner", "Autotuner"] and tuned["keys"] == [["N", "REVERSE"]] * 2
    if not tuned["supported"]:
        pytest.skip(f"triton {tuned['version']} has no autotune(cache_results=...)")
    assert tuned["cache"] == [True, True]
