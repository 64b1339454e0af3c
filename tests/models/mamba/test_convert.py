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
    hf = hf_config_from_mamba_ssm(MAMBA_SSM_130M)
    adapter = adapter_for_hf_config(hf)
    assert adapter.family == "mamba2"
    m = adapter.model_config(hf)
    preset = get_preset("biomamba-130m").model
    assert architecture_differences(preset, m) == ["vocab_size: 50277 != 50288"]  # the stored, padded rows
    assert (m.mamba_state_dim, m.mamba_head_dim, m.mamba_num_groups, m.mamba_chunk_size) == (128, 64, 1, 256)
    assert m.padded_vocab_size(1) == 50288


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
