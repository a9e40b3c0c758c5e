"""The HTML report: valid, self-contained, the expected figures and table, user strings escaped."""

from __future__ import annotations

from html.parser import HTMLParser

from plotly.offline import get_plotlyjs

from dashboards.common import ReportData, RunSet
from dashboards.report import build_html, memory_figures, plotlyjs_src, table_rows, write_report

GIB = 2**30


def row(model, mode, device="cuda", d=4096, layers=32, batch="seed", **metrics):
    base = {
        "batch": batch,
        "model": model,
        "mode": mode,
        "device": device,
        "status": "ok",
        "params": 3_081_831_424,
        "gpu_name": "NVIDIA H200" if device == "cuda" else None,
        "config": {"model": model, "mode": mode, "d_model": d, "n_layers": layers, "seq_len": 512, "batch_size": 1},
        "weights_bytes": int(5.74 * GIB),
        "peak_bytes": int(5.81 * GIB),
        "activation_bytes": int(0.07 * GIB),
    }
    return base | metrics


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self.stack = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in ("meta", "br", "hr", "img", "input", "link"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> (open: {self.stack[-3:]})"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts.append(data)


def test_table_rows_show_ours_next_to_the_report():
    rows = table_rows([row("phase7-seed", "inference"), row("phase7-seed", "train", peak_bytes=12 * GIB)])
    assert rows[0][0] == "Maximum (d4096 L32 N512 B1)"
    assert rows[0][6:9] == ["5.740", "5.810", "0.070"] and rows[0][9] == "5.74 / 5.81 / 0.07"
    assert rows[1][7] == "12.000" and rows[1][9] == "-"  # the report has no training numbers


def test_figures_split_by_device_and_mode():
    rows = [
        row("phase7-seed", "inference"),
        row("phase8-seed", "inference"),
        row("phase7-seed", "train"),
        row("transformer", "inference", device="cpu", weights_bytes=10, peak_bytes=None, activation_bytes=5),
    ]
    figures = memory_figures(rows)
    titles = [f.layout.title.text for f in figures]
    assert len(figures) == 3 and any("cpu" in t for t in titles) and any("train" in t for t in titles)
    inference_gpu = next(f for f in figures if "inference" in f.layout.title.text and "H200" in f.layout.title.text)
    assert [t.name for t in inference_gpu.data] == [
        f"{m} {k}" for m in ("phase7-seed", "phase8-seed") for k in ("weights", "peak", "activation")
    ]
    assert abs(inference_gpu.data[0].y[0] - 5.74) < 1e-3


def test_html_is_valid_self_contained_and_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    rows = [row("phase7-seed", "inference", batch=evil), row("phase8-seed", "inference", batch=evil)]
    path = write_report(rows, tmp_path / "sub" / "report.html")
    text = path.read_text()
    parser = Collector()
    parser.feed(text)
    assert parser.tags[0] == "html" and not parser.stack
    assert evil not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "plotly" in parser.scripts[0].lower() and len(parser.scripts[0]) > 1_000_000  # plotly.js embedded
    assert "cdn" not in text.split("</script>", 1)[1].lower()  # nothing loaded from the network
    assert text.count('class="pb-figure"') == 2  # memory bars and the stacked breakdown


def test_empty_report_says_what_to_run():
    assert "phasebench run examples/quickstart.yaml" in build_html(ReportData(RunSet()))


def test_training_curves_by_tokens_and_time():
    from dashboards.report import curve_figures

    run = row("phase8", "train", device="cpu") | {"run_id": "r1", "index": 0}
    run["config"] = run["config"] | {"job": "train"}
    curves = {
        "r1": [
            {"kind": "train", "step": s, "tokens": 100 * s, "elapsed_s": 0.5 * s, "loss": 5.0 - s / 10}
            for s in range(1, 11)
        ]
        + [{"kind": "eval", "step": 10, "tokens": 1000, "elapsed_s": 5.0, "val_loss": 4.2}]
    }
    by_tokens, by_time = curve_figures([run, row("phase7-seed", "inference")], curves)
    assert [t.name for t in by_tokens.data] == ["phase8 #0 (seed, cpu) train", "phase8 #0 (seed, cpu) validation"]
    assert list(by_tokens.data[0].x) == [100 * s for s in range(1, 11)] and list(by_tokens.data[1].y) == [4.2]
    assert list(by_time.data[0].x)[-1] == 5.0 and "wall time" in by_time.layout.xaxis.title.text
    assert curve_figures([row("phase7-seed", "inference")], {}) == []
    html_text = build_html(ReportData(RunSet.of([run]), curves=curves))
    assert "Loss (nats per token) by tokens seen" in html_text
    assert "phasebench run examples/train-stdlib.yaml" in build_html(
        ReportData(RunSet.of([row("phase7-seed", "inference")]))
    )


def test_reports_can_share_one_plotlyjs_loaded_by_relative_path(tmp_path):
    shared = tmp_path / "site" / "plotly.min.js"
    rows = [row("phase7-seed", "inference")]
    first = write_report(rows, tmp_path / "site" / "a" / "report.html", plotlyjs=shared)
    written = shared.stat().st_mtime_ns
    second = write_report(rows, tmp_path / "site" / "b c" / "d" / "report.html", plotlyjs=shared)
    assert shared.read_text(encoding="utf-8") == get_plotlyjs() and shared.stat().st_mtime_ns == written  # once
    assert '<script src="../plotly.min.js"></script>' in first.read_text()
    assert '<script src="../../plotly.min.js"></script>' in second.read_text()
    assert len(first.read_text()) < 100_000 and "Plotly.newPlot(" in first.read_text()  # figures, no plotly.js
    assert plotlyjs_src(tmp_path / "js dir" / "p.js", tmp_path / "r.html") == "js%20dir/p.js"
