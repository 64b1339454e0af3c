"""The mamba2 Hugging Face adapter (megatron_biomed/convert/mamba2.py): transformers' Mamba2ForCausalLM weights
fill our model through the convert seam and give the same logits; export gives back the same tensors; the
state-spaces mamba_ssm config and embedding name are understood."""

from __future__ import annotations

import pytest
import torch

from megatron_biomed.config import get_preset
from megatron_biomed.convert import adapter_for_hf_config, get_adapter
from megatron_biomed.convert.importer import architecture_differences, fill_model
from megatron_biomed.convert.mamba2 import hf_config_from_mamba_ssm
from megatron_biomed.models.registry import get_family

transformers = pytest.importorskip("transformers")

# state-spaces/mamba2-130m config.json (mamba_ssm format)
MAMBA_SSM_130M = {"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277,
                  "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True,
                  "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 16,
                  "tie_embeddings": True}  # fmt: skip


def test_mamba_ssm_config_is_the_130m_preset():
    """state-spaces/mamba2-130m's config.json is recognised as mamba_ssm's own format and is preset
    biomamba-130m: the tokenizer's 50,277 ids, stored as 50,288 rows (pad_vocab_size_multiple 16)."""
    from megatron_biomed.convert.importer import experiment_config
    from megatron_biomed.convert.registry import read_checkpoint_config

    hf, vocab, native = read_checkpoint_config(MAMBA_SSM_130M)
    assert native == "mamba2" and vocab == 50277 and hf["vocab_size"] == 50288
    assert adapter_for_hf_config(hf).family == "mamba2"
    m = get_adapter("mamba2").model_config(hf)
    assert (m.mamba_state_dim, m.mamba_head_dim, m.mamba_num_groups, m.mamba_chunk_size) == (128, 64, 1, 256)
    cfg, _ = experiment_config(hf, "config.json", "biomamba-130m", vocab_size=vocab)  # no difference to the preset
    assert cfg.model.vocab_size == 50277 and cfg.model.padded_vocab_size(1) == 50288
    preset = get_preset("biomamba-130m").model
    assert architecture_differences(preset, cfg.model) == []
    # a transformers config passes through unchanged
    assert read_checkpoint_config(hf) == (hf, 50288, None)


def test_import_reads_a_mamba_ssm_checkpoint_directly(tmp_path):
    """A tiny checkpoint in the state-spaces format (mamba_ssm's config.json and pytorch_model.bin with its
    names: backbone.embedding.weight, backbone.layers.N.mixer.*, norm_f, the tied lm_head.weight), imported
    by tools/convert_hf.py's import_hf with no config step, gives transformers' Mamba2ForCausalLM logits on
    the same weights (within 1e-5 of their scale)."""
    import json

    from megatron.core import parallel_state as ps

    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.loading import load_model

    native = {"d_model": 64, "d_intermediate": 0, "n_layer": 2, "vocab_size": 500,
              "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 16, "ngroups": 2, "chunk_size": 16},
              "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
              "fused_add_norm": True, "pad_vocab_size_multiple": 16, "tie_embeddings": True}  # fmt: skip
    hf_cfg = hf_config_from_mamba_ssm(native)
    assert hf_cfg["vocab_size"] == 512
    torch.manual_seed(0)
    hf = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(
        **{k: v for k, v in hf_cfg.items() if k != "architectures"})).eval()  # fmt: skip
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("D", "norm.weight", "dt_bias")):
                p.add_(0.1 * torch.randn_like(p))
            if name.endswith(("in_proj.weight", "out_proj.weight")):
                p.mul_(4.0)  # so the mixers move the logits
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v.clone() for k, v in hf.state_dict().items()}
    assert "lm_head.weight" in sd and "backbone.layers.1.mixer.in_proj.weight" in sd
    (tmp_path / "ssm").mkdir()
    torch.save(sd, tmp_path / "ssm" / "pytorch_model.bin")
    (tmp_path / "ssm" / "config.json").write_text(json.dumps(native))
    try:
        import_hf(tmp_path / "ssm", tmp_path / "ckpt")
        model, cfg = load_model(tmp_path / "ckpt")
        assert cfg.model.family == "mamba2" and cfg.model.vocab_size == 500
        assert cfg.model.padded_vocab_size(1) == 512 and cfg.model.mamba_num_groups == 2
        tokens = torch.randint(0, 500, (2, 40), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            theirs = hf(tokens).logits[..., :500]
            ours = model(tokens, torch.arange(40)[None].expand(2, -1), None, runtime_gather_output=True)[..., :500]
    finally:
        if ps.model_parallel_is_initialized():
            ps.destroy_model_parallel()
    diff = (ours - theirs).abs().max() / theirs.abs().max()
    print(f"mamba_ssm import vs transformers: max logit difference {diff:.1e} of their scale")
    assert diff <= 1e-5


def test_hf_weights_give_the_same_logits_and_export_back(single_rank_parallel, tmp_path):
    from megatron_biomed.convert.hf_io import HFReader

    cfg = get_preset("tiny-mamba")
    adapter = get_adapter("mamba2")
    hf_cfg = adapter.hf_config(cfg.model, {}, "float32")
    hf_cfg["vocab_size"] = cfg.model.padded_vocab_size(1)
    torch.manual_seed(0)
    config = transformers.Mamba2Config(**{k: v for k, v in hf_cfg.items() if k not in ("architectures", "dtype")})
    hf = transformers.Mamba2ForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial values for the parameters HF initialises to constants
        for name, p in hf.named_parameters():
            if name.endswith(("D", "norm.weight", "dt_bias")):
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")
    (model,) = get_family("mamba2").build_model_chunks(cfg)
    fill_model(model, cfg.model, adapter, HFReader(tmp_path / "hf"))
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(tokens, torch.arange(40)[None].expand(2, -1), None, runtime_gather_output=True)
        theirs = hf(tokens).logits
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()
    # export: our tensors -> HF names give back exactly what was imported
    sd = model.state_dict()
    exported = adapter.globals_to_hf(cfg.model, sd)
    for i in range(cfg.model.num_layers):
        prefix = f"decoder.layers.{i}."
        exported.update(adapter.layer_to_hf(cfg.model, i, {k[len(prefix):]: v for k, v in sd.items()
                                                            if k.startswith(prefix)}))  # fmt: skip
    hf_sd = {k: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    assert sorted(exported) == sorted(hf_sd)
    assert all(torch.equal(exported[k], hf_sd[k]) for k in hf_sd)
