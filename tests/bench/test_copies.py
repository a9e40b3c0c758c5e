"""bench/copies.py on a tiny phase8 step: copies counted by source, per layer, summing to the total."""

from __future__ import annotations

import json

import pytest

from bench import copies

TINY = [
    "model=phase8",
    "d_model=32",
    "n_layers=2",
    "n_heads=2",
    "vocab_size=128",
    "seq_len=16",
    "batch_size=2",
    "device=cpu",
    "precision=pure_bf16",
    "kernels=torch",
]


def test_copies_are_charged_to_their_source_lines_and_sum_to_the_total(tmp_path, capsys):
    copies.main(["--set", *TINY, "--top", "50", "--out", str(tmp_path / "c")])
    report = json.loads((tmp_path / "c.json").read_text())
    rows = report["rows"]
    assert rows and report["calls"] == sum(r["calls"] for r in rows)
    assert report["activations_per_layer"] == pytest.approx(sum(r["activations_per_layer"] for r in rows))
    assert [r["activations_per_layer"] for r in rows] == sorted(
        (r["activations_per_layer"] for r in rows), reverse=True
    )
    sources = {r["source"] for r in rows}
    assert any(s.startswith("<autograd: ") for s in sources)  # the backward of a cast
    assert any(s.startswith("models/") for s in sources)  # a forward cast in the model
    # the per-channel gates broadcast: no (B, N, d) copy of a gate (an expanded fp32 clone and its cast before)
    assert not any(s.startswith("models/layers/gates.py") for s in sources), sources
    # q, k, v are unbound before the head transpose: their grads stack into the projection's layout, no re-layout
    assert not any(s == "<autograd: ViewBackward0>" for s in sources), sources
    assert report["config"]["model"] == "phase8" and report["environment"]["torch"]
    assert (tmp_path / "c.txt").read_text() == capsys.readouterr().out


def test_under_autocast_projections_of_one_input_share_its_cast(tmp_path):
    amp = [a.replace("precision=pure_bf16", "precision=amp_bf16") for a in TINY]
    copies.main(["--set", *amp, "--top", "50", "--out", str(tmp_path / "c")])
    sources = {r["source"] for r in json.loads((tmp_path / "c.json").read_text())["rows"]}
    # the BK-Core reads the cast of h it shares with the window attention (the AR-SSM's projections share another)
    assert not any(s.startswith("models/layers/bk_core.py") for s in sources), sources
    assert any(s.startswith("models/layers/autocast.py") for s in sources), sources
