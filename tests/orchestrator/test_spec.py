"""Spec validation, grid expansion and hash stability."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.spec import (
    check_model_version,
    config_hash,
    expand,
    load_spec,
    stored_config,
)
from orchestrator.yamlfile import load_yaml, parse_value, parse_yaml

REPO = Path(__file__).resolve().parents[2]

TINY = {"vocab_size": 256, "d_model": 64, "n_layers": 2, "n_heads": 4, "device": "cpu"}


def spec(**overrides):
    data = {"name": "t", "defaults": dict(TINY), "grid": {"model": ["transformer"]}}
    data.update(overrides)
    return data


def with_defaults(**kv):
    return spec(defaults=TINY | kv)


BAD_SPECS = [
    (spec(name=""), "name: must be a non-empty string"),
    (spec(name=5), "name: must be a non-empty string"),
    (spec(name="x" * 201), "name: must be at most 200 characters"),
    (spec(bogus=1), "bogus: unknown spec key"),
    (spec(defaults=[1, 2]), "defaults: must be a mapping"),
    (spec(cases=[]), "cases: must be a non-empty list"),
    (spec(cases=[3]), "cases[0]: must be a mapping"),
    (spec(cases={}), "cases: must be a non-empty list"),
    (spec(cases={"size": []}), "cases.size: must be a non-empty list of mappings"),
    (spec(cases={"size": [{"d_model": 64}], "length": [7]}), "cases.length[0]: must be a mapping"),
    (
        spec(cases={"size": [{"d_model": 64}], "length": [{"seq_len": 8}, {"seq_len": 16, "d_model": 32}]}),
        "cases.length[1].d_model: is also set by another cases axis",
    ),
    (
        spec(cases={"size": [{"d_model": 64}], "length": [{"seq_len": 8}, {"n_heads": 3}]}),
        "n_heads: must divide d_model=64 [cases.size[0] x cases.length[1] model=transformer] (got 3)",
    ),
    (spec(grid={"model": []}), "grid.model: is an empty list"),
    ({"name": "t", "defaults": TINY}, "grid: is empty and there are no cases"),
    (spec(grid={"model": ["gpt5"]}), "model: unknown model"),
    (spec(grid={}), "grid: is empty"),
    (with_defaults(n_heads=3), "n_heads: must divide d_model=64"),
    (with_defaults(d_model=0), "d_model: must be >= 1"),
    (with_defaults(d_model="big"), "d_model: must be an integer"),
    (with_defaults(d_model=64.0), "d_model: must be an integer"),
    (with_defaults(seq_len=0), "seq_len: must be >= 1"),
    (with_defaults(seq_len=65537), "seq_len: must be <= 65536"),
    (with_defaults(batch_size=True), "batch_size: must be an integer"),
    (with_defaults(mode="training"), "mode: must be one of inference, train_no_optim, train"),
    (with_defaults(device="tpu"), "device: must be one of auto, cuda, cpu"),
    (with_defaults(precision="fp8"), "precision: must be one of"),
    (with_defaults(num_gpus=-2), "num_gpus: must be >= -1"),
    (with_defaults(num_gpus=1), "num_gpus: must be 0 when device is cpu"),
    (with_defaults(timeout_s=0), "timeout_s: must be > 0"),
    (with_defaults(steps=0), "steps: must be >= 1"),
    (with_defaults(warmup_steps=-1), "warmup_steps: must be >= 0"),
    (with_defaults(repeats="3"), "repeats: must be an integer"),
    (with_defaults(seed=-1), "seed: must be >= 0"),
    (with_defaults(vram_budget_gb=float("nan")), "vram_budget_gb: must be finite"),
    (with_defaults(embed_rank_ratio=0), "embed_rank_ratio: must be > 0"),
    (with_defaults(ffn_rank_ratio=1.5), "ffn_rank_ratio: must be <= 1"),
    (with_defaults(ffn_rank_ratio=0.001), "ffn_rank_ratio: gives rank < 1"),
    (with_defaults(grad_checkpoint="yes"), "grad_checkpoint: must be true or false"),
    (with_defaults(windoww=64), "windoww: unknown field"),
    (with_defaults(mode="train", seq_len=1), "seq_len: must be >= 2 in mode train"),
    (with_defaults(fault="segfault"), "fault: must be one of none, raise, exit"),
    (with_defaults(kernels="cuda"), "kernels: must be one of auto, triton, torch"),
    (with_defaults(loss_chunk_tokens=-1), "loss_chunk_tokens: must be >= 0"),
    (with_defaults(loss_chunk_tokens=0.5), "loss_chunk_tokens: must be an integer"),
    (spec(defaults={**TINY, "model": None}, grid={"mode": ["inference"]}), "model: must be a string"),
    (spec(defaults={k: v for k, v in TINY.items()}, grid={"mode": ["inference"]}), "model: is required"),
    (spec(grid={"model": ["transformer"], "d_model": list(range(1, 10_002))}), "grid: expands to more than 10,000"),
]


@pytest.mark.parametrize(
    "data, message", BAD_SPECS, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_SPECS)]
)
def test_bad_spec_is_one_line_naming_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        expand(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_at_least_25_bad_specs():
    assert len(BAD_SPECS) >= 25


def test_grid_crosses_cases():
    data = spec(
        cases=[{"d_model": 64}, {"d_model": 128, "n_heads": 8}],
        grid={"model": ["transformer", "phase7-seed"], "mode": ["inference", "train"]},
    )
    runs = expand(data).runs
    assert len(runs) == 8
    assert [r.index for r in runs] == list(range(8))
    assert {(r.config["d_model"], r.model, r.config["mode"]) for r in runs} == {
        (d, m, mode) for d in (64, 128) for m in ("transformer", "phase7-seed") for mode in ("inference", "train")
    }


def test_named_case_axes_cross_each_other_and_the_grid():
    sizes = [{"model": "transformer", "d_model": 64, "n_layers": 2}, {"model": "phase7", "d_model": 32, "n_layers": 1}]
    lengths = [{"seq_len": 64, "batch_size": 4}, {"seq_len": 128, "batch_size": 2}, {"seq_len": 256, "batch_size": 1}]
    runs = expand(spec(cases={"size": sizes, "length": lengths}, grid={"mode": ["inference", "train"]})).runs
    assert len(runs) == 2 * 3 * 2
    got = [(r.model, r.config["d_model"], r.config["seq_len"], r.config["batch_size"], r.config["mode"]) for r in runs]
    assert got == [
        (s["model"], s["d_model"], n["seq_len"], n["batch_size"], mode)
        for s in sizes
        for n in lengths
        for mode in ("inference", "train")
    ]
    assert all(r.config["seq_len"] * r.config["batch_size"] == 256 for r in runs)


def test_named_case_axes_count_against_the_limit_before_expanding():
    many = [{"seed": i} for i in range(200)]
    with pytest.raises(ConfigError, match="expands to more than 10,000 configs"):
        expand(spec(cases={"a": many, "b": [{"warmup_steps": i} for i in range(51)]}))


def test_scalar_grid_value_is_one_point_and_duplicates_collapse():
    runs = expand(spec(grid={"model": "transformer", "seq_len": [64, 64, 32]})).runs
    assert [r.config["seq_len"] for r in runs] == [64, 32]


def test_large_grid_allowed_with_yes():
    data = spec(grid={"model": ["transformer"], "seed": list(range(10_001))})
    assert len(expand(data, allow_large=True).runs) == 10_001


def test_resolved_config_has_every_default_and_exact_params():
    run = expand(spec()).runs[0]
    assert run.config["mode"] == "inference" and run.config["steps"] == 5 and run.config["num_gpus"] == 0.0
    assert run.config["embedding"] == "lowrank" and run.config["causal"] is True
    # transformer d=64 L=2 V=256 dense: embed 256*64,
    # per block 2*64 + 4*64^2 + 2*64*256 + 256 + 64, norm 64, head 64*256
    assert run.params == 256 * 64 + 2 * (128 + 4 * 64 * 64 + 2 * 64 * 256 + 256 + 64) + 64 + 64 * 256


def test_hash_is_stable_and_order_independent():
    a = {"model": "transformer", "d_model": 64, "seq_len": 128}
    b = dict(reversed(list(a.items())))
    assert config_hash(a) == config_hash(b) == "99a53cbcc4647207"
    assert config_hash(a | {"seq_len": 129}) != config_hash(a)
    first = expand(spec()).runs[0].config_hash
    assert expand(spec()).runs[0].config_hash == first


def test_default_and_explicit_values_hash_alike():
    implicit = expand(spec()).runs[0]
    explicit = expand(with_defaults(mode="inference", steps=5, causal=True)).runs[0]
    assert implicit.config_hash == explicit.config_hash


def _without_version(config):
    return {k: v for k, v in config.items() if k != "model_version"}


def test_model_version_is_resolved_and_hashed_from_version_2_on():
    transformer = expand(spec()).runs[0]
    assert transformer.config["model_version"] == 1  # stored with every row
    assert transformer.config_hash == config_hash(_without_version(transformer.config))  # the hash it always had
    phase8 = expand(spec(grid={"model": ["phase8"]})).runs[0]
    assert phase8.config["model_version"] == 2
    assert phase8.config_hash != config_hash(_without_version(phase8.config))  # old phase8 rows are not reused


def test_a_spec_cannot_set_the_model_version():
    with pytest.raises(ConfigError, match="model_version: is set by phasebench"):
        expand(with_defaults(model_version=2))


def test_a_run_queued_for_another_model_version_is_refused_where_it_runs():
    config = expand(spec(grid={"model": ["phase8"]})).runs[0].config
    check_model_version(config)
    with pytest.raises(ConfigError, match="phase8 is at version 2 in this code"):
        check_model_version(_without_version(config))  # queued before phase8's math changed


def test_yaml_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="spec: file not found"):
        load_yaml(missing)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_yaml(binary)
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        parse_yaml("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"at line 2, column 1"):
        parse_yaml("name: [unclosed\n")
    with pytest.raises(ConfigError, match="is a directory"):
        load_yaml(tmp_path)


def billion_laughs(levels: int) -> str:
    """A YAML alias bomb: `levels` anchors of 9 aliases each (9**levels values once expanded)."""
    return "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(levels)
    )


def test_yaml_alias_bomb_is_refused():
    with pytest.raises(ConfigError, match="more than 100 YAML aliases"):
        parse_yaml(billion_laughs(12))
    with pytest.raises(ConfigError, match="expands to more than 100,000 YAML values"):
        parse_yaml(billion_laughs(8))


def test_yaml_anchors_for_shared_defaults_still_work():
    text = (
        "name: t\ndefaults: &d {vocab_size: 256, d_model: 64, n_layers: 2, n_heads: 4, device: cpu}\n"
        "cases: [{<<: *d, seq_len: 32}]\ngrid: {model: [transformer]}\n"
    )
    assert expand(parse_yaml(text)).runs[0].config["seq_len"] == 32


BATCH_EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("study-"))


@pytest.mark.parametrize("path", BATCH_EXAMPLES, ids=[p.stem for p in BATCH_EXAMPLES])
def test_every_batch_example_validates(path):
    assert load_spec(path).runs


def test_long_context_sizes_match_and_tokens_per_step_is_constant():
    runs = load_spec(REPO / "examples" / "long-context.yaml").runs
    assert len(runs) == 6 * 6 * 3
    assert {r.config["seq_len"] * r.config["batch_size"] for r in runs} == {32768}
    assert {r.config["seq_len"] for r in runs} == {512, 1024, 2048, 4096, 8192, 16384}
    for d_model in (1024, 2048):
        params = {r.params for r in runs if r.config["d_model"] == d_model}
        assert {r.model for r in runs if r.config["d_model"] == d_model} == {"transformer", "phase7", "phase8"}
        assert max(params) / min(params) <= 1.05, params


@pytest.mark.parametrize("field, values", [("kernels", ["triton", "torch"]), ("execution", ["eager", "compile"])])
def test_how_a_run_executes_its_model_is_part_of_the_config_hash(field, values):
    runs = expand(spec(grid={"model": ["phase7"], field: values})).runs
    assert [r.config[field] for r in runs] == values
    assert runs[0].config_hash != runs[1].config_hash


def test_eager_hashes_as_the_compile_false_it_replaced_and_the_other_modes_differ():
    """Rows stored before `execution` existed (with `compile: false`) are still reused by eager configs."""
    eager = expand(spec()).runs[0]
    stored = {k: v for k, v in eager.config.items() if k != "execution"} | {"compile": False}
    assert eager.config_hash == config_hash(stored)
    compiled = expand(with_defaults(execution="compile")).runs[0]
    assert compiled.config_hash not in (eager.config_hash, config_hash(stored | {"compile": True}))


def test_stored_compile_flags_read_as_execution_modes():
    assert stored_config({"model": "phase7", "compile": True})["execution"] == "compile"
    assert stored_config({"model": "phase7", "compile": False})["execution"] == "eager"
    assert stored_config({"model": "phase7"})["execution"] == "eager"
    assert "compile" not in stored_config({"model": "phase7", "compile": True})


@pytest.mark.parametrize(
    "knobs, message",
    [
        (dict(execution="graph"), "execution: captures a CUDA graph: needs device cuda (got cpu)"),
        (dict(execution="compile_graph"), "execution: captures a CUDA graph: needs device cuda (got cpu)"),
        (dict(execution="bogus"), "execution: must be one of auto, eager, graph, compile, compile_graph"),
        (dict(compile=True), "compile: was replaced by the run field execution (eager, graph or compile)"),
    ],
)
def test_bad_execution_is_one_line_naming_the_field(knobs, message):
    with pytest.raises(ConfigError) as info:
        expand(with_defaults(**knobs))
    assert str(info.value).startswith(message)


def test_auto_execution_is_graph_where_the_model_can_be_captured_and_is_stored_resolved(monkeypatch):
    import orchestrator.spec as spec_module

    monkeypatch.setattr(spec_module, "_cuda_available", lambda: True)
    cpu, explicit = (expand(with_defaults(device="cpu", **knobs)).runs[0] for knobs in ({}, {"execution": "eager"}))
    assert cpu.config["execution"] == "eager" and cpu.config_hash == explicit.config_hash  # old rows still reused
    data = with_defaults(device="cuda") | {"grid": {"model": ["transformer", "phase7", "phase8"]}}
    assert [r.config["execution"] for r in expand(data).runs] == ["graph"] * 3
    phase8 = with_defaults(device="cuda", lin_attn_mode="auto") | {"grid": {"model": ["phase8"]}}
    assert expand(phase8).runs[0].config["execution"] == "eager"  # it reads its curvature on the host
    train = with_defaults(device="cuda", job="train", mode="train") | {"grid": {"model": ["phase7"]}}
    assert expand(train).runs[0].config["execution"] == "graph"  # training is captured too


def test_a_model_that_syncs_the_host_is_refused_for_graph_by_name(monkeypatch):
    import orchestrator.spec as spec_module

    monkeypatch.setattr(spec_module, "_cuda_available", lambda: True)
    data = with_defaults(execution="graph", device="cuda", lin_attn_mode="auto") | {"grid": {"model": ["phase8"]}}
    with pytest.raises(ConfigError, match="execution: cannot capture phase8: lin_attn_mode auto reads the curvature"):
        expand(data)
    data["defaults"]["lin_attn_mode"] = "linear"
    assert expand(data).runs[0].config["execution"] == "graph"


def test_numbers_in_exponent_form_are_numbers_wherever_a_number_is_expected():
    """`1e-3` is a string to PyYAML (YAML 1.1 wants `1.0e-3`); a spec, `--set` and `--where` read it as a number."""
    text = "name: x\ndefaults: {device: cpu, curvature_init: 1e-3, vram_budget_gb: 2E+1}\ngrid: {model: [phase7]}\n"
    data = parse_yaml(text)
    run = expand(data).runs[0].config
    assert run["curvature_init"] == 0.001 and run["vram_budget_gb"] == 20.0
    assert parse_value("-2.5e2") == -250.0 and parse_value("1e5x") == "1e5x" and parse_value("[") == "["
