"""BioMedLM's published config.json is our biomedlm-2.7b preset, and converts both ways (at a tiny depth)."""

from __future__ import annotations

import pytest
import torch
from published_configs import BIOMEDLM


def test_published_config_is_the_preset():
    from megatron_biomed.convert.importer import experiment_config

    cfg, adapter = experiment_config(BIOMEDLM, "BioMedLM/config.json", "biomedlm-2.7b")
    assert adapter.family == "gpt2"
    assert cfg.model.scale_attn_by_inverse_layer_idx and cfg.model.activation == "gelu_tanh"
    assert cfg.model.kernels == "auto" and cfg.optimizer.name == "decoupled_adamw"  # the preset's choices kept


def test_wrong_preset_is_refused_naming_the_fields():
    from megatron_biomed.convert.importer import experiment_config
    from megatron_biomed.convert.registry import ConversionError

    with pytest.raises(ConversionError, match=r"num_layers: 32 != 2.*scale_attn_by_inverse_layer_idx"):
        experiment_config(
            BIOMEDLM | {"n_layer": 2, "scale_attn_by_inverse_layer_idx": False}, "c.json", "biomedlm-2.7b"
        )


def test_unsupported_fields_are_refused():
    from megatron_biomed.convert.importer import experiment_config
    from megatron_biomed.convert.registry import ConversionError

    with pytest.raises(ConversionError, match="activation_function='relu'"):
        experiment_config(BIOMEDLM | {"activation_function": "relu"}, "c.json", None)


def test_biomedlm_width_two_layers_both_ways(tmp_path):
    """The published width, heads, vocabulary and options at two layers: HF -> ours -> HF, same logits."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    from megatron_biomed.convert.exporter import export_hf
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.loading import load_model

    torch.manual_seed(0)
    fields = {k: v for k, v in BIOMEDLM.items() if k not in ("architectures", "model_type")}
    fields |= {"n_layer": 2, "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0}
    hf = GPT2LMHeadModel(GPT2Config(**fields)).eval()
    hf.save_pretrained(tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    model, cfg = load_model(tmp_path / "ckpt")
    assert cfg.model.padded_vocab_size(1) == 28928
    t = torch.randint(0, 28896, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = hf(t).logits
        got = model(t, torch.arange(16).unsqueeze(0), None)[..., :28896]
    assert (want - got).abs().max().item() <= 1e-5 * want.abs().max().item()
    del hf
    export_hf(tmp_path / "ckpt", tmp_path / "out")
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert back.config.scale_attn_by_inverse_layer_idx and back.config.eos_token_id == 28895
    with torch.no_grad():
        assert (back(t).logits - got).abs().max().item() <= 1e-5 * want.abs().max().item()
