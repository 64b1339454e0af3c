"""megatron_biomed.config: presets against the papers' parameter counts, the analytic count against a real
megatron-core GPTModel, and YAML / --set parsing with its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_biomed.config import ConfigError, get_preset, load_config
from megatron_biomed.models.registry import count_parameters
from megatron_biomed.training.launch import load_run_config
from megatron_biomed.training.pretrain import main as pretrain_main

# --- presets against the published sizes ---------------------------------------------------------------


def test_biomedlm_preset_is_2_7b_within_5_percent():
    cfg = get_preset("biomedlm-2.7b")
    m = cfg.model
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.seq_length, m.vocab_size) == (
        32,
        2560,
        20,
        1024,
        28896,
    )
    total = count_parameters(m).total
    assert abs(total - 2.7e9) / 2.7e9 < 0.05, total
    # Tied embeddings: no separate output layer; learned absolute positions: 1024 x 2560.
    c = count_parameters(m)
    assert c.output_layer == 0 and c.position_embedding == 1024 * 2560


def test_biomedlm_preset_trains_300b_tokens():
    t = get_preset("biomedlm-2.7b").train
    assert t.global_batch_size * 1024 == 1_048_576
    assert t.train_iters == 286_102
    assert abs(t.train_iters * 1_048_576 - 300e9) / 300e9 < 1e-5


def test_llama2_70b_shape_within_1_percent_of_69b():
    cfg = get_preset("biollm-70b")
    m = cfg.model
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups, m.ffn_size) == (
        80,
        8192,
        64,
        8,
        28672,
    )
    extended = count_parameters(m).total
    m.vocab_size = 32000  # LLaMA-2's own vocabulary: the published 69B (LLaMA-2 paper, Table 1: "70B")
    llama2 = count_parameters(m).total
    assert abs(llama2 - 69.0e9) / 69.0e9 < 0.01, llama2
    # The 2,000 added tokens cost one embedding row and one (untied) output row each.
    assert extended - llama2 == 2 * 2000 * 8192


@pytest.mark.parametrize("preset", ["tiny-biomedlm", "tiny-llama"])
def test_count_parameters_equals_gptmodel(single_rank_parallel, preset):
    from megatron_biomed.models.registry import build_model_chunks

    cfg = get_preset(preset)
    # A vocabulary that is not a multiple of 128, so the padded embedding rows are exercised.
    cfg.model.vocab_size = 500
    (model,) = build_model_chunks(cfg)
    real = sum(p.numel() for p in model.parameters())
    assert count_parameters(cfg.model, padded_vocab=True).total == real
    # Without padding the count is short by exactly the 12 padding rows (x2 when the output is untied).
    rows = 12 * cfg.model.hidden_size * (1 if cfg.model.tie_embeddings else 2)
    assert count_parameters(cfg.model).total == real - rows


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown preset 'biomedlm-7b'.*biomedlm-2\.7b.*tiny-llama"):
        get_preset("biomedlm-7b")


# --- YAML and --set ------------------------------------------------------------------------------------


def test_preset_then_yaml_then_set(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text(
        "preset: tiny-llama\n"
        "name: my-run\n"
        "model:\n  num_layers: 6\n  hidden_size: 128\n"
        "optimizer.lr: 3.0e-4\n"  # dotted keys work at the top level too
        "parallel:\n  tensor_model_parallel_size: 2\n"
    )
    cfg = load_config(None, y, ["model.num_layers=8", "train.micro_batch_size=1"])
    assert cfg.name == "my-run"
    assert cfg.model.family == "llama" and cfg.model.num_query_groups == 2  # from the preset named in the YAML
    assert cfg.model.hidden_size == 128  # from the YAML
    assert cfg.model.num_layers == 8  # --set wins over the YAML
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.parallel.tensor_model_parallel_size == 2
    assert cfg.train.micro_batch_size == 1
    # An explicit preset argument wins over the YAML's preset: line.
    assert load_config("tiny-biomedlm", y).model.family == "gpt2"


@pytest.mark.parametrize(
    "override, field, expected",
    [
        ("model.num_layers=12", ("model", "num_layers"), 12),
        ("optimizer.lr=1e-4", ("optimizer", "lr"), 1e-4),  # YAML reads 1e-4 as a string; the field makes it a float
        ("optimizer.weight_decay=0", ("optimizer", "weight_decay"), 0.0),
        ("model.layernorm_epsilon=1.0e-6", ("model", "layernorm_epsilon"), 1e-6),
        ("parallel.sequence_parallel=true", ("parallel", "sequence_parallel"), True),
        ("model.num_query_groups=4", ("model", "num_query_groups"), 4),
        ("model.ffn_hidden_size=null", ("model", "ffn_hidden_size"), None),
        ("data.tokenizer=", ("data", "tokenizer"), None),
        ("data.tokenizer=/data/tok dir", ("data", "tokenizer"), "/data/tok dir"),
        ("data.split=95", ("data", "split"), "95"),  # YAML reads 95 as an integer; the field makes it a string
        (
            "data.blend=0.8 /d/pubmed_text_document 0.2 /d/pmc_text_document",
            ("data", "blend"),
            ["0.8", "/d/pubmed_text_document", "0.2", "/d/pmc_text_document"],
        ),
        ("data.blend=[a, b]", ("data", "blend"), ["a", "b"]),
        ("train.inject_nonfinite_loss_at=[3, 5]", ("train", "inject_nonfinite_loss_at"), [3, 5]),
    ],
)
def test_set_values_take_the_field_type(override, field, expected):
    cfg = load_config("tiny-biomedlm", overrides=[override])
    value = getattr(getattr(cfg, field[0]), field[1])
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "model.num_layer=4",
            r"--set model\.num_layer=4: unknown config field 'model\.num_layer' \(known here: .*num_layers",
        ),
        ("modle.num_layers=4", r"unknown config field 'modle' \(known here: checkpoint, data, logging, model"),
        ("model.num_layers.x=4", r"'model\.num_layers' is not a section"),
        ("model=4", r"'model' is a section"),
        ("model.num_layers", r"expected section\.field=value"),
        ("model.num_layers=abc", r"model\.num_layers: expected an integer, got 'abc'"),
        ("model.num_layers=2.5", r"model\.num_layers: expected an integer, got 2\.5"),
        ("model.hidden_dropout=lots", r"model\.hidden_dropout: expected a number, got 'lots'"),
        ("parallel.sequence_parallel=1", r"parallel\.sequence_parallel: expected true/false, got 1"),
        ("model.num_query_groups=two", r"model\.num_query_groups: expected an integer, got 'two'"),
    ],
)
def test_set_errors_name_the_field_and_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny-biomedlm", overrides=[override])


@pytest.mark.parametrize(
    "override",
    [
        "model.num_layers=true",
        "train.micro_batch_size=",
        "train.inject_nonfinite_loss_at=5",
        "data.tokenizer=[a, b]",
    ],
)
def test_set_refuses_wrong_types(override):
    try:
        load_config("tiny-biomedlm", overrides=[override])
    except ConfigError as e:
        assert override.split("=")[0] in str(e)
        return
    raise AssertionError(f"--set {override} was accepted")


def test_yaml_errors_name_the_file(tmp_path):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("model:\n  num_layer: 3\n")
    with pytest.raises(ConfigError, match=rf"{bad_key}: unknown config field 'model.num_layer'.*num_layers"):
        load_config(None, bad_key)

    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("train:\n  global_batch_size: many\n")
    with pytest.raises(ConfigError, match=rf"{bad_type}: .*global_batch_size: expected an integer, got 'many'"):
        load_config("tiny-biomedlm", bad_type)

    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  num_layers: [1\n")
    with pytest.raises(ConfigError, match=rf"(?s){broken}: not valid YAML.*line 2"):
        load_config(None, broken)

    listing = tmp_path / "list.yaml"
    listing.write_text("- model\n- train\n")
    with pytest.raises(ConfigError, match=rf"{listing}: expected a mapping at the top level"):
        load_config(None, listing)


def test_yaml_errors_give_the_dotted_field(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("model:\n  num_layer: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(None, y)
    assert "'model.num_layer'" in str(e.value)


def test_cli_reports_config_errors_with_exit_2(capsys):
    assert pretrain_main(["--preset", "tiny-biomedlm", "--set", "model.num_layer=4", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set model.num_layer=4: unknown config field 'model.num_layer'")
    assert pretrain_main(["--preset", "tiny-biomedlm", "--set", "train.global_batch_size=lots", "--dry-run"]) == 2
    assert "train.global_batch_size: expected an integer, got 'lots'" in capsys.readouterr().err


def test_cli_dry_run_applies_yaml_and_set(tmp_path, capsys):
    import json

    y = tmp_path / "run.yaml"
    y.write_text("preset: tiny-biomedlm\ntrain:\n  global_batch_size: 16\n  micro_batch_size: 2\n")
    rc = pretrain_main(
        [
            "--config",
            str(y),
            "--set",
            "train.train_iters=7",
            "--set",
            "parallel.tensor_model_parallel_size=2",
            "--dry-run",
            "--world-size",
            "4",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    plan = json.loads(out[out.index("{") :])
    assert plan["name"] == "tiny-biomedlm"
    assert (plan["tensor_model_parallel_size"], plan["data_parallel_size"]) == (2, 2)
    assert plan["num_microbatches"] == 16 // (2 * 2)
    assert plan["train_iters"] == 7 and plan["train_tokens"] == 7 * 16 * 64


# --- choice fields are refused when read --------------------------------------------------------------


@pytest.mark.parametrize(
    "override, allowed",
    [
        ("model.kernels=cuda", "auto, csrc, te, sdpa, torch, emu"),
        ("model.activation=relu", "gelu, gelu_tanh, swiglu"),
        ("model.family=gpt3", "gpt2, llama, mamba2"),
        ("model.normalization=layernorm", "LayerNorm, RMSNorm"),
        ("model.position_embedding_type=alibi", "learned_absolute, rope"),
        ("train.precision=bfloat16", "fp32, bf16, fp16"),
    ],
)
def test_choice_typos_are_refused_by_load_run_config(override, allowed):
    field, value = override.split("=")
    with pytest.raises(ConfigError) as e:
        load_run_config("tiny-biomedlm", overrides=[override])
    assert str(e.value) == f"--set {override}: {field}={value!r} is not one of: {allowed}"


def test_choice_typos_in_yaml_name_the_file_and_every_bad_field(tmp_path):
    y = tmp_path / "typos.yaml"
    y.write_text("preset: tiny-llama\nmodel:\n  kernels: CSRC\ntrain:\n  precision: fp8\n")
    with pytest.raises(ConfigError) as e:
        load_run_config(None, y)
    assert str(e.value) == (
        f"{y}: model.kernels='CSRC' is not one of: auto, csrc, te, sdpa, torch, emu; "
        f"{y}: train.precision='fp8' is not one of: fp32, bf16, fp16"
    )


def test_every_preset_passes_validation():
    from megatron_biomed.config import PRESETS, validate

    for name in PRESETS:
        validate(get_preset(name))


def test_cli_refuses_a_kernels_typo_before_any_process_group(capsys):
    assert pretrain_main(["--preset", "tiny-biomedlm", "--set", "model.kernels=cuda"]) == 2
    assert "model.kernels='cuda' is not one of: auto, csrc, te, sdpa, torch, emu" in capsys.readouterr().err


def test_config_modules_import_one_way():
    """At import time loading.py imports experiment.py and presets.py, and neither imports it (or, for
    experiment.py, the presets) back: the old circle experiment <-> presets is gone."""
    import ast

    import megatron_biomed.config as pkg

    root = Path(pkg.__file__).parent
    for name in ("experiment.py", "presets.py", "model.py", "training.py", "parallel.py", "task.py"):
        top_level = ast.parse((root / name).read_text()).body
        imported = {
            (n.module + "." + a.name) if n.module == "megatron_biomed.config" else n.module
            for n in top_level
            if isinstance(n, ast.ImportFrom)
            for a in n.names
        }
        assert "megatron_biomed.config.loading" not in imported, name
        if name != "presets.py":
            assert "megatron_biomed.config.presets" not in imported, name
