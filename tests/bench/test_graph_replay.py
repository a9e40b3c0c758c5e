"""bench/graph_replay.py on CPU: its sweep expands and validates every combination; a graph needs CUDA."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("graph_replay", REPO / "bench" / "graph_replay.py")
graph_replay = importlib.util.module_from_spec(spec)
spec.loader.exec_module(graph_replay)

TINY = ["model=phase7", "d_model=32", "n_layers=1", "n_heads=2", "vocab_size=256", "device=cuda"]


def parsed(argv):
    parser = graph_replay.build_parser()
    return parser, parser.parse_args(argv)


def test_a_sweep_is_every_combination_in_order_with_capturable_training():
    configs = graph_replay.sweep_configs(
        *parsed(["--set", *TINY, "--sweep", "mode=inference,train", "seq_len=64,128,256"])
    )
    assert [(c["mode"], c["seq_len"]) for c in configs] == [
        ("inference", 64),
        ("inference", 128),
        ("inference", 256),
        ("train", 64),
        ("train", 128),
        ("train", 256),
    ]
    assert {c["execution"] for c in configs} == {"graph"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", *TINY[:-1], "device=cpu"], "device cuda"),
        (["--set", *TINY, "--sweep", "seq_len=64,0"], "seq_len"),
    ],
)
def test_bad_configs_exit_2_naming_the_field(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        graph_replay.main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err
