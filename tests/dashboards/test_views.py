"""The views' builders against known content: memory breakdown, sequence-length scaling, kernel
benchmarks, the run table (filters, details, escaping) and the checks of exported / kernel files."""

from __future__ import annotations

import json

import pytest
from dashboard_samples import EVIL, GIB, kernel_file, result_row, sweep_rows

from dashboards.common import ReportData, RunSet
from dashboards.kernel_bench import kernel_figures, kernel_section, kernel_table
from dashboards.memory import PARTS, breakdown_figures, memory_parts
from dashboards.report import build_html
from dashboards.runs import filter_options, row_attributes, runs_section
from dashboards.scaling import EMPTY, crossovers, scaling_figures, scaling_section
from dashboards.sources import read_exports, read_kernels
from orchestrator.errors import UserError

MIB = 2**20


def trained(model="phase8", device="cuda", **fields):
    """A GPU training row: 100 MiB weights, +200 MiB AdamW state, peak - static = 150 MiB."""
    measured = {
        "params": 25 * MIB,
        "weights_bytes": 100 * MIB,
        "static_bytes": 300 * MIB,
        "peak_bytes": 450 * MIB,
        "activation_bytes": 150 * MIB,
        "logits_bytes": 10 * MIB,
    }
    return result_row(model, mode="train", device=device, precision="amp_fp16", **measured | fields)


# ------------------------------------------------------------------------------------------- memory
def test_gpu_parts_are_disjoint_and_add_up_to_the_peak():
    parts = memory_parts(trained(extra={"gradient_bytes": 100 * MIB}))
    assert parts == {
        "weights": 100 * MIB,
        "optimizer state": 200 * MIB,
        "gradients": 100 * MIB,
        "logits": 10 * MIB,
        "activations": 40 * MIB,
    }
    assert sum(parts.values()) == 450 * MIB


def test_gradients_of_older_rows_are_estimated_and_capped_at_what_the_peak_leaves():
    parts = memory_parts(trained())  # no extra.gradient_bytes: 25 Mi params x 4 bytes (amp keeps fp32)
    assert parts["gradients"] == 100 * MIB and parts["activations"] == 40 * MIB
    capped = memory_parts(trained(peak_bytes=350 * MIB, activation_bytes=50 * MIB))
    assert capped["gradients"] == 50 * MIB and capped["logits"] == 0 and capped["activations"] == 0
    inference = memory_parts(
        result_row(
            "phase8",
            weights_bytes=100 * MIB,
            static_bytes=100 * MIB,
            peak_bytes=130 * MIB,
            activation_bytes=30 * MIB,
            logits_bytes=10 * MIB,
        )
    )
    assert inference == {
        "weights": 100 * MIB,
        "optimizer state": 0,
        "gradients": 0,
        "logits": 10 * MIB,
        "activations": 20 * MIB,
    }


def test_cpu_parts_take_gradients_beside_the_saved_tensors():
    cpu = result_row(
        "phase8",
        mode="train",
        device="cpu",
        precision="fp32",
        weights_bytes=100 * MIB,
        static_bytes=300 * MIB,
        activation_bytes=30 * MIB,
        logits_bytes=10 * MIB,
        extra={"gradient_bytes": 100 * MIB, "activation_source": "saved_tensors"},
    )
    assert memory_parts(cpu) == {
        "weights": 100 * MIB,
        "optimizer state": 200 * MIB,
        "gradients": 100 * MIB,
        "logits": 10 * MIB,
        "activations": 20 * MIB,
    }


def test_breakdown_stacks_parts_per_config_and_family_one_figure_per_device_and_mode():
    rows = [
        trained(),
        trained(model="transformer"),
        trained(device="cpu"),
        result_row("phase8", weights_bytes=GIB, static_bytes=GIB, peak_bytes=2 * GIB, activation_bytes=GIB),
        result_row("phase8", status="oom"),
    ]  # nothing measured: left out
    figures = breakdown_figures(rows)
    titles = [f.layout.title.text for f in figures]
    assert len(figures) == 3 and sum("mode train, NVIDIA H200" in t for t in titles) == 1
    assert any("mode train, cpu" in t for t in titles) and all("GiB" in t for t in titles)
    gpu_train = next(f for f in figures if "mode train, NVIDIA H200" in f.layout.title.text)
    assert [t.name for t in gpu_train.data] == list(PARTS) and gpu_train.layout.barmode == "stack"
    groups, bars = [list(level) for level in gpu_train.data[0].x]
    assert groups == ["d64 N512 B1"] * 2 and bars == ["phase8 L2", "transformer L2"]
    assert [round(y * 1024) for y in gpu_train.data[2].y] == [100, 100]  # gradients, MiB
    assert list(gpu_train.data[2].text) == ["estimated", "estimated"]


def test_breakdown_groups_families_of_one_size_and_tells_variants_apart():
    """Families matched in size differ in depth; a knob that varies (grad_checkpoint) names the group."""
    rows = [
        trained(model, **{"config": trained()["config"] | {"n_layers": layers, "grad_checkpoint": checkpoint}})
        for model, layers in (("transformer", 20), ("phase7", 19))
        for checkpoint in (False, True)
    ]
    (fig,) = breakdown_figures(rows + [rows[0]])  # a config measured twice counts once
    groups, bars = [list(level) for level in fig.data[0].x]
    assert groups == ["d64 N512 B1 grad_checkpoint=False"] * 2 + ["d64 N512 B1 grad_checkpoint=True"] * 2
    assert bars == ["phase7 L19", "transformer L20"] * 2


def test_rows_from_before_a_knob_existed_group_beside_rows_that_vary_it():
    """An older export lacks a knob (kernels) that a newer batch varies: both draw, the old group unnamed."""
    old = trained("transformer", **{"config": {k: v for k, v in trained()["config"].items()} | {"d_model": 128}})
    new = [
        trained("phase7", **{"config": trained()["config"] | {"kernels": kernels}}) for kernels in ("triton", "torch")
    ]
    (fig,) = breakdown_figures([old] + new)
    groups = sorted(set(fig.data[0].x[0]))
    assert groups == ["d128 N512 B1", "d64 N512 B1 kernels=torch", "d64 N512 B1 kernels=triton"]


# ------------------------------------------------------------------------------------------ scaling
def test_scaling_figure_draws_each_family_and_marks_oom_and_over_budget():
    (fig,) = scaling_figures(sweep_rows() + [result_row("phase8", seq_len=512, device="cpu")])  # no CPU sweep
    assert "mode inference, NVIDIA H200" in fig.layout.title.text
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == fig.layout.yaxis2.type == "log"
    assert fig.layout.yaxis.title.text == "GiB" and fig.layout.yaxis2.title.text == "tokens/s"
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [(t.name, t.xaxis, list(t.x)) for t in lines] == [
        ("phase8 (d64 L2, B1)", "x", [512, 1024, 2048, 4096]),
        ("phase8 (d64 L2, B1)", "x2", [512, 1024, 2048, 4096]),
        ("transformer (d64 L2, B1)", "x", [512, 1024, 2048]),
        ("transformer (d64 L2, B1)", "x2", [512, 1024, 2048]),
    ]
    assert list(lines[1].y) == [800.0, 850.0, 700.0, 600.0]
    oom = [t for t in fig.data if t.name == "transformer (d64 L2, B1): OOM"]
    assert [(t.marker.symbol, list(t.x)) for t in oom] == [("x", [4096]), ("x", [4096])]
    assert oom[0].y[0] == pytest.approx(1.5) and oom[1].y[0] == 500.0  # nothing measured: top / bottom
    over = [t for t in fig.data if t.name == "phase8 (d64 L2, B1): over budget"]
    assert [(t.marker.symbol, list(t.x), list(t.y)) for t in over] == [
        ("diamond-open", [4096], [pytest.approx(1.5)]),
        ("diamond-open", [4096], [600.0]),
    ]


def test_a_rerun_that_names_a_newer_field_at_its_default_replaces_the_old_rows():
    """Rows stored before `loss_chunk_tokens` existed and a rerun carrying its default are one series,
    drawn from the rerun (the later batch)."""
    old = [r for r in sweep_rows() if r["model"] == "phase8"]
    rerun = [
        r | {"batch": "rerun", "tokens_per_s": 2 * r["tokens_per_s"], "config": r["config"] | {"loss_chunk_tokens": 0}}
        for r in old
    ]
    (fig,) = scaling_figures(old + rerun)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["phase8 (d64 L2, B1)"] * 2
    assert list(lines[1].y) == [1600.0, 1700.0, 1400.0, 1200.0]


def test_crossover_is_the_first_length_where_the_family_beats_the_transformer():
    assert crossovers(sweep_rows()) == [
        [
            "NVIDIA H200",
            "inference",
            "phase8 (d64 L2, B1), 1,000 params",
            "transformer (d64 L2, B1), 1,000 params",
            "2,048",
            "1,024",
            "512, 1,024, 2,048, 4,096",
        ]
    ]
    slower = [r | {"tokens_per_s": 1.0} if r["model"] == "phase8" else r for r in sweep_rows()]
    assert crossovers(slower)[0][4] == "4,096 (transformer OOM)"
    other_width = [
        r | {"config": r["config"] | {"d_model": 128}} if r["model"] == "phase8" else r for r in sweep_rows()
    ]
    assert crossovers(other_width) == []  # no transformer at the same knobs


def test_constant_tokens_per_step_sweeps_compare_families_matched_in_size():
    """examples/long-context.yaml: batch x seq constant, families matched in parameters by their depth."""

    def run(model, layers, params, n, tokens, **config):
        row = result_row(model, seq_len=n, params=params, peak_bytes=GIB, tokens_per_s=tokens)
        row["config"] |= {"batch_size": 4096 // n, "n_layers": layers, **config}
        return row

    rows = [run("transformer", 20, 1000, n, 100.0) for n in (512, 1024, 2048)]
    rows += [run("transformer", 40, 2000, n, 100.0) for n in (512, 1024, 2048)]  # the other size
    rows += [run("phase7", 19, 990, n, t, window=64) for n, t in ((512, 50.0), (1024, 90.0), (2048, 150.0))]
    rows += [run("phase7", 19, 990, n, 1.0, window=64, precision="fp32") for n in (512, 1024)]  # no fp32 baseline
    (fig,) = scaling_figures(rows)
    names = sorted({t.name for t in fig.data})
    assert "phase7 (d64 L19, 4,096 tokens/step, precision=fp32)" in names and len(names) == 4
    assert crossovers(rows) == [
        [
            "NVIDIA H200",
            "inference",
            "phase7 (d64 L19, 4,096 tokens/step, precision=pure_fp16), 990 params",
            "transformer (d64 L20, 4,096 tokens/step, precision=pure_fp16), 1,000 params",
            "2,048",
            "none",
            "512, 1,024, 2,048",
        ]
    ]


def test_scaling_needs_two_lengths_and_says_what_to_run():
    single = [result_row("transformer", peak_bytes=GIB, tokens_per_s=1.0), result_row("phase8", peak_bytes=GIB)]
    assert scaling_figures(single) == [] and scaling_section(single) == EMPTY
    assert "phasebench run examples/long-context.yaml" in EMPTY
    assert "<table" in scaling_section(sweep_rows())


# ------------------------------------------------------------------------------------------ kernels
def test_kernel_figure_plots_achieved_bandwidth_per_implementation_under_the_copy_bound():
    (fig,) = kernel_figures([kernel_file() | {"name": "k.json"}])
    title = fig.layout.title.text
    assert "scan" in title and "GB/s" in title and "NVIDIA H200" in title and "fwd+bwd" in title
    by_name = {(t.name, t.xaxis): t for t in fig.data}
    triton_fwd, triton_fb = by_name[("triton", "x")], by_name[("triton", "x2")]
    assert list(triton_fwd.x) == [512, 1024] and list(triton_fwd.y) == pytest.approx([1000.0, 2000.0])
    assert list(triton_fb.y) == pytest.approx([500.0, 1000.0])
    assert list(by_name[("torch_ref", "x2")].y) == []  # its backward failed
    anchor = by_name[("accelerated_scan.triton (anchor)", "x")]
    assert list(anchor.y) == pytest.approx([2000.0, 4000.0]) and anchor.line.dash == "dash"
    copy = by_name[("device copy bound (4,000 GB/s)", "x")]
    assert list(copy.y) == [4000.0, 4000.0] and fig.layout.yaxis.type == "log"
    assert not list(by_name[("accelerated_scan.warp (anchor)", "x")].y)  # skipped


def test_kernel_table_shows_times_bandwidth_and_why_a_number_is_missing():
    lines = kernel_table(kernel_file() | {"name": "k.json"})
    assert lines[0] == ["scan", "512", "triton", "0.01", "0.04", "1,000 (25.0 %)", "500 (12.5 %)", ""]
    assert lines[1][-1] == "fwd_bwd: RuntimeError: boom" and lines[3][-1] == "--skip-anchors"
    failed = kernel_file() | {
        "name": "k.json",
        "rows": [{"op": "scan", "shape": {"N": 64}, "impls": {}, "error": "OutOfMemoryError"}],
    }
    assert kernel_table(failed) == [["scan", "64", "-", "-", "-", "-", "-", "OutOfMemoryError"]]
    assert "bench/kernels.py" in kernel_section([])


# --------------------------------------------------------------------------------------- run table
def test_filters_offer_every_value_and_every_line_carries_its_values():
    legacy = result_row("phase7")  # exported before `execution` existed, with the flag it replaced
    legacy["config"]["compile"] = True
    rows = [
        result_row("phase8"),
        result_row("transformer", device="cpu", batch="b2", status="oom", execution="graph"),
        legacy,
    ]
    options = filter_options(rows)
    assert options == {
        "gpu": ["NVIDIA H200", "none"],
        "device": ["cpu", "cuda"],
        "mode": ["inference"],
        "execution": ["compile", "eager", "graph"],
        "model": ["phase7", "phase8", "transformer"],
        "batch": ["b2", "sweep"],
        "status": ["ok", "oom"],
    }
    attrs = row_attributes(rows)
    assert attrs[1] == {
        "data-run": "1",
        "tabindex": "0",
        "data-gpu": "none",
        "data-device": "cpu",
        "data-mode": "inference",
        "data-execution": "graph",
        "data-model": "transformer",
        "data-batch": "b2",
        "data-status": "oom",
    }


def test_run_table_and_details_escape_user_strings():
    evil = result_row(
        EVIL,
        batch=EVIL,
        error=f"Traceback {EVIL}",
        peak_bytes=GIB,
        environment={
            "driver": "580",
            "torch": "2.11",
            "triton": "3.6",
            "git_commit": EVIL,
            "details": {"platform": "linux"},
        },
    )
    text = runs_section(RunSet.of([evil, result_row("phase8")]))
    assert EVIL not in text and text.count("&lt;script&gt;window.pwned=1&lt;/script&gt;") >= 6
    assert 'data-batch="&lt;script&gt;' in text and '<option value="&lt;script&gt;' in text
    assert "from the result database" in text and "2.11" in text and "linux" in text
    assert "gpu_name, hostname and git_commit" in text  # the exported row's environment says what it lacks
    assert text.count('class="pb-detail"') == 2 and "1,073,741,824 B (1.000 GiB)" in text
    assert EVIL not in build_html(ReportData(RunSet.of([evil])))


# ------------------------------------------------------------------------------------------ sources
def test_exports_and_kernel_files_are_read_and_bad_ones_rejected_naming_the_option(tmp_path):
    good = tmp_path / "rows.json"
    good.write_text(json.dumps(sweep_rows()))
    assert len(read_exports([str(good), str(good)])) == 2 * len(sweep_rows())
    kernels = tmp_path / "k.json"
    kernels.write_text(json.dumps(kernel_file()))
    assert read_kernels([str(kernels)])[0]["name"] == "k.json"
    bad = {
        "missing.json": None,
        "text.json": "not json",
        "dict.json": json.dumps({"rows": []}),
        "row.json": json.dumps([{"run_id": "x"}]),
        "metric.json": json.dumps([sweep_rows()[0] | {"peak_bytes": "1"}]),
    }
    for name, content in bad.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        with pytest.raises(UserError, match=f"^--from-export: .*{name}"):
            read_exports([str(tmp_path / name)])
    wrong = {
        "bw.json": kernel_file() | {"copy_bandwidth_Bps": 0},
        "shape.json": kernel_file() | {"rows": [{"op": "scan", "shape": {}, "impls": {}}]},
        "ms.json": kernel_file()
        | {"rows": [{"op": "scan", "shape": {"N": 1}, "impls": {"t": {"fwd": {"median_ms": "1"}}}}]},
    }
    for name, content in wrong.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(UserError, match=f"^--kernels: .*{name}"):
            read_kernels([str(tmp_path / name)])
    with pytest.raises(UserError, match="^--kernels: .*rows.json"):
        read_kernels([str(good)])


def test_figures_from_results_read_back_from_a_real_database(db_url):
    """Known content stored through the store (both backends), read back with api.results, then drawn."""
    from orchestrator import api
    from orchestrator.spec import expand
    from orchestrator.store.repository import Store

    store = Store(db_url)
    try:
        batch = store.create_batch(
            expand(
                {
                    "name": "stored",
                    "defaults": {
                        "vocab_size": 256,
                        "d_model": 32,
                        "n_layers": 1,
                        "n_heads": 2,
                        "device": "cuda",
                        "num_gpus": 1,
                    },
                    "grid": {"model": ["transformer", "phase8"], "seq_len": [512, 1024]},
                }
            )
        )
        gpu = {"hostname": "h", "device": "cuda", "gpu_name": "NVIDIA H200", "torch": "t", "git_commit": "c"}
        for run in store.reset_unfinished(batch.id):
            n, fast = run.config["seq_len"], run.model == "phase8"
            store.record_result(
                run.id,
                {
                    "status": "ok",
                    "stage": "done",
                    "params": 10,
                    "weights_bytes": GIB,
                    "static_bytes": GIB,
                    "peak_bytes": GIB + n * 2**20,
                    "activation_bytes": n * 2**20,
                    "logits_bytes": n * 2**10,
                    "tokens_per_s": (2000.0 if fast else 1000.0) / (n // 512),
                    "environment": gpu,
                },
            )
    finally:
        store.close()
    rows = api.results(db=db_url)
    (scaling,) = scaling_figures(rows)
    peaks = {t.name: list(t.y) for t in scaling.data if t.mode == "lines+markers" and t.xaxis == "x"}
    assert peaks == {"phase8 (d32 L1, B1)": [1.5, 2.0], "transformer (d32 L1, B1)": [1.5, 2.0]}
    (breakdown,) = breakdown_figures(rows)
    assert "NVIDIA H200" in breakdown.layout.title.text and [t.name for t in breakdown.data] == list(PARTS)
    totals = [sum(t.y[i] for t in breakdown.data) for i in range(4)]
    assert sorted(totals) == pytest.approx([1.5, 1.5, 2.0, 2.0])  # the stack adds up to each stored peak
