"""config.json is read as transformers reads it (convert/registry.py HFAdapter.read_config, convert/hf_io.py
read_config_json), and every family at transformers' defaults goes HF -> ours -> HF with transformers' logits.

* Configs saved by the installed transformers at its defaults (only sizes shrunk) import, give transformers'
  logits, and export back to a directory whose logits are the original model's, bit for bit (Mamba2 with 8,
  1 and 2 B/C groups: the export of an imported Mamba2 failed before).
* A field that config.json leaves out means what it means to transformers (its class default), with or
  without transformers installed.
* The published BioMedLM, Llama-2 and state-spaces configs read as our presets, with or without transformers.
* What we cannot reproduce is refused naming the file and the field.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from hf_models import hf_logits, our_logits, tokens
from published_configs import BIOMEDLM, LLAMA_2_7B, LLAMA_2_70B, MAMBA2_2_7B, MAMBA2_130M

transformers = pytest.importorskip("transformers")

VOCAB = 300
# Imported logits against transformers', relative to their largest. Measured with the weights below (CPU, fp32):
# llama 3.8e-7, gpt2 2.1e-7, mamba2 0 (every group count); without the default fields, the same.
IMPORT_RTOL = 1e-6

# case -> (family, transformers config class, model class, what is not transformers' default: sizes, for speed)
CASES = {
    "gpt2": ("gpt2", "GPT2Config", "GPT2LMHeadModel", dict(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB)),
    "llama": ("llama", "LlamaConfig", "LlamaForCausalLM",
              dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   vocab_size=VOCAB)),
    # 8 B/C groups (the default), 8 SSM heads of the default 64 channels
    "mamba2": ("mamba2", "Mamba2Config", "Mamba2ForCausalLM",
               dict(hidden_size=256, num_heads=8, num_hidden_layers=2, vocab_size=VOCAB)),
    # one group, as state-spaces' checkpoints (the exporter looked for a conv1d.weight key, which is stored in parts)
    "mamba2-1group": ("mamba2", "Mamba2Config", "Mamba2ForCausalLM",
                      dict(hidden_size=256, num_heads=8, n_groups=1, num_hidden_layers=2, vocab_size=VOCAB)),
    # 2 groups of 2 heads (the exporter's shrunk skeleton of this model had 1 SSM head and failed its layout check)
    "mamba2-2groups": ("mamba2", "Mamba2Config", "Mamba2ForCausalLM",
                       dict(hidden_size=128, num_heads=4, n_groups=2, num_hidden_layers=2, vocab_size=VOCAB)),
}  # fmt: skip
# The field holding the positions a model was made for (Mamba2 has none).
POSITIONS = {"gpt2": "n_positions", "llama": "max_position_embeddings", "mamba2": None}


pytestmark = pytest.mark.usefixtures("quiet_transformers")


def save_default_model(case: str, out, seed: int = 0):
    """transformers' model of ``case`` at its config class's defaults but for the sizes, saved in ``out`` with
    save_pretrained. Parameters transformers initialises to a constant (norms, biases, Mamba2's D) are moved
    off it, so that a swapped or forgotten tensor changes the logits."""
    _, config_class, model_class, sizes = CASES[case]
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**sizes)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1 and p.std() == 0:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out)
    return model


def _relative_difference(want: torch.Tensor, got: torch.Tensor) -> float:
    return ((want - got).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("case", list(CASES))
def test_default_config_imports_and_exports_back(case, tmp_path):
    """HF (transformers' defaults) -> our checkpoint: transformers' logits; -> HF again: the original logits
    exactly (the weights come back bit for bit)."""
    from transformers import AutoModelForCausalLM

    from megatron_biomed.convert.exporter import export_hf
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.loading import load_model

    hf = save_default_model(case, tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    model, cfg = load_model(tmp_path / "ckpt")
    assert cfg.model.family == CASES[case][0] and cfg.model.vocab_size == VOCAB
    t = tokens()
    want, got = hf_logits(hf, t), our_logits(model, t, VOCAB)
    diff = _relative_difference(want, got)
    print(f"{case}: imported logits differ from transformers' by {diff:.2g} of their scale")
    assert diff <= IMPORT_RTOL, f"{case}: imported logits differ by {diff:.3g} of their scale"

    export_hf(tmp_path / "ckpt", tmp_path / "out")
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(back) is type(hf)
    assert torch.equal(hf_logits(back, t), want), f"{case}: HF -> ours -> HF changed the logits"


def _minimal_config(case: str, directory) -> list[str]:
    """Rewrite ``directory``/config.json without the fields whose value is the config class's default (as an
    older or hand-written config.json leaves them out); the names of the fields left out."""
    defaults = getattr(transformers, CASES[case][1])().to_dict()
    saved = transformers.PretrainedConfig.get_config_dict(str(directory / "config.json"))[0]
    keep = ("model_type", "architectures")
    minimal = {k: v for k, v in saved.items() if k in keep or k not in defaults or v != defaults[k]}
    (directory / "config.json").write_text(json.dumps(minimal, indent=2))
    return sorted(set(saved) - set(minimal))


@pytest.mark.parametrize("case", ["gpt2", "llama", "mamba2"])
def test_fields_left_out_mean_what_they_mean_to_transformers(case, tmp_path):
    """A config.json without the fields at their defaults: transformers reads it with its class defaults (here
    Mamba2's 8 groups and untied output layer, Llama's 2,048 positions, GPT-2's 1,024), and so must we."""
    from transformers import AutoModelForCausalLM

    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.loading import load_model

    save_default_model(case, tmp_path / "hf")
    left_out = _minimal_config(case, tmp_path / "hf")
    family = CASES[case][0]
    assert {"gpt2": "n_positions", "llama": "max_position_embeddings", "mamba2": "n_groups"}[family] in left_out
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()  # transformers' reading
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    model, cfg = load_model(tmp_path / "ckpt")
    t = tokens()
    diff = _relative_difference(hf_logits(reference, t), our_logits(model, t, VOCAB))
    print(f"{case} without {len(left_out)} default fields: logits differ by {diff:.2g} of their scale")
    assert diff <= IMPORT_RTOL, f"{case}: imported logits differ by {diff:.3g} of their scale"
    assert cfg.model.tie_embeddings == reference.config.tie_word_embeddings
    if POSITIONS[family]:
        assert cfg.model.seq_length == getattr(reference.config, POSITIONS[family])
    if family == "mamba2":
        assert cfg.model.mamba_num_groups == reference.config.n_groups == 8


def _without_transformers(monkeypatch) -> None:
    """Make ``import transformers`` fail, as on an install without the test requirements."""
    monkeypatch.setitem(sys.modules, "transformers", None)


@pytest.mark.parametrize("case", ["gpt2", "llama", "mamba2"])
def test_reading_without_transformers_gives_the_same_model(case, tmp_path, monkeypatch):
    """The plain-JSON reading (no transformers installed) gives the ModelConfig transformers' reading gives:
    for the config.json transformers saves (Mamba2's holds {"__float__": "Infinity"}), for one without the
    fields at their defaults, and for one with only model_type (every field its class default)."""
    from megatron_biomed.convert import adapter_for_hf_config
    from megatron_biomed.convert.hf_io import read_config_json
    from megatron_biomed.convert.registry import optional_transformers

    family, config_class, _, sizes = CASES[case]
    files = {}
    for name in ("saved", "minimal", "empty"):
        getattr(transformers, config_class)(**sizes).save_pretrained(tmp_path / name)
        files[name] = tmp_path / name / "config.json"
    _minimal_config(case, tmp_path / "minimal")
    files["empty"].write_text(json.dumps({"model_type": family}))
    if family == "mamba2":
        assert '"__float__": "Infinity"' in files["saved"].read_text()

    def model_configs():
        out = {}
        for name, file in files.items():
            hf = read_config_json(file)
            out[name] = adapter_for_hf_config(hf, str(file)).model_config(hf, str(file))
        return out

    with_transformers = model_configs()
    _without_transformers(monkeypatch)
    assert optional_transformers() is None
    without = model_configs()
    for name in files:
        assert without[name] == with_transformers[name], f"{case} {name}: {without[name]} != {with_transformers[name]}"
    assert with_transformers["saved"] == with_transformers["minimal"]


@pytest.mark.parametrize("use_transformers", [True, False], ids=["transformers", "plain-json"])
@pytest.mark.parametrize(
    "name, published, preset, vocab",
    [
        ("BioMedLM", BIOMEDLM, "biomedlm-2.7b", None),
        ("Llama-2-70b-hf", LLAMA_2_70B, "biollm-70b", 34000),  # the preset adds 2,000 tokens to 32,000
        ("mamba2-130m", MAMBA2_130M, "biomamba-130m", None),
        ("mamba2-2.7b", MAMBA2_2_7B, "biomamba-2.7b", None),
    ],
)
def test_published_configs_are_the_presets(name, published, preset, vocab, use_transformers, tmp_path, monkeypatch):
    """Each published config.json, read as an import reads it, is its preset's architecture, field by field
    (experiment_config refuses any difference)."""
    from megatron_biomed.convert.hf_io import read_config_json
    from megatron_biomed.convert.importer import experiment_config
    from megatron_biomed.convert.registry import read_checkpoint_config

    if not use_transformers:
        _without_transformers(monkeypatch)
    (tmp_path / "config.json").write_text(json.dumps(published))
    where = str(tmp_path / "config.json")
    hf, base_vocab, native = read_checkpoint_config(read_config_json(where), where)
    assert native == ("mamba2" if name.startswith("mamba2") else None)
    cfg, adapter = experiment_config(hf, where, preset, vocab_size=vocab or base_vocab)
    assert cfg.model.family == adapter.family


@pytest.mark.parametrize("use_transformers", [True, False], ids=["transformers", "plain-json"])
def test_llama_2_7b_config(use_transformers, tmp_path, monkeypatch):
    """Llama-2-7b's config.json (no rope_theta, head_dim, attention_bias: written before they existed)."""
    from megatron_biomed.convert.hf_io import read_config_json
    from megatron_biomed.convert.importer import experiment_config

    if not use_transformers:
        _without_transformers(monkeypatch)
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_2_7B))
    where = str(tmp_path / "config.json")
    m = experiment_config(read_config_json(where), where, None)[0].model
    got = (m.family, m.num_layers, m.hidden_size, m.num_attention_heads, m.kv_heads, m.ffn_size, m.seq_length,
           m.vocab_size, m.rotary_base, m.layernorm_epsilon, m.tie_embeddings)  # fmt: skip
    assert got == ("llama", 32, 4096, 32, 32, 11008, 4096, 32000, 10000, 1e-5, False)


@pytest.mark.parametrize(
    "case, changes, field",
    [
        ("mamba2", {"time_step_limit": (0.0, 0.1)}, "time_step_limit"),
        ("mamba2", {"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),  # MambaMixer's gated norm has 1e-5
        ("mamba2", {"use_bias": True}, "use_bias"),
        ("mamba2", {"hidden_act": "gelu"}, "hidden_act"),
        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope type 'linear'"),
        ("llama", {"attention_bias": True}, "attention_bias"),
        ("gpt2", {"activation_function": "relu"}, "activation_function"),
        ("gpt2", {"tie_word_embeddings": False}, "tie_word_embeddings"),  # untied GPT-2: refused, not imported tied
    ],
)
def test_unsupported_configs_are_refused_naming_file_and_field(case, changes, field, tmp_path):
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.convert.registry import ConversionError

    _, config_class, _, sizes = CASES[case]
    getattr(transformers, config_class)(**sizes, **changes).save_pretrained(tmp_path / "hf")
    with pytest.raises(ConversionError) as e:
        import_hf(tmp_path / "hf", tmp_path / "ckpt")
    message = str(e.value)
    assert message.startswith(str(tmp_path / "hf" / "config.json")) and field in message, message


def test_config_transformers_refuses_is_refused_naming_the_field(tmp_path):
    """A config transformers' own class rejects (Mamba2: num_heads x head_dim != expand x hidden_size)."""
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.convert.registry import ConversionError

    (tmp_path / "hf").mkdir()
    config = {"model_type": "mamba2", "hidden_size": 64, "num_heads": 3, "num_hidden_layers": 1}
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"(?s)config\.json: transformers' Mamba2Config refuses it: .*num_heads"):
        import_hf(tmp_path / "hf", tmp_path / "ckpt")
