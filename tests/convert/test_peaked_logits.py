"""HF -> ours and ours -> HF on PEAKED models, logit for logit against transformers' own models: every attention
grouping of the LLaMA family (MHA, GQA with 8 and 2 query groups, MQA), tied and untied embeddings, and GPT-2
with ``scale_attn_by_inverse_layer_idx`` absent from config.json, false, and true.

Random transformers models at their init have near-uniform logits that a wrong mapping hardly moves; these are
scaled up (hf_models.peak: sharp attention that moves the residual stream, logits of tens of units), so a query
head reading the wrong key/value group, a lost tie or a wrong softmax scale moves the argmax. Each case asserts:

* import: our model's logits are transformers' (argmax at every position, and every logit within ATOL);
* export: the directory the exporter writes, loaded by transformers, gives OUR model's logits (argmax and
  ATOL) and, the weights coming back bit for bit, the original model's logits exactly;
* the tie: tied in config.json is tied in our model and in the exported transformers model (one tensor), untied
  stays two tensors.
"""

from __future__ import annotations

import json

import pytest
import torch
from hf_models import VOCAB, hf_logits, our_logits, peak, tokens, top_probability

transformers = pytest.importorskip("transformers")

# Largest |logit difference| (absolute; logits up to ~30 here), CPU fp32. Measured on these models, import and
# export alike: llama 3.6e-5 (mha), 3.1e-5 (gqa8), 2.1e-5 (gqa2), 3.7e-5 (mqa); gpt2 9.5e-6 (flag absent or false),
# 8.6e-6 (true). A wrong mapping moves logits by units.
ATOL = 1e-4
# Mean top-token probability at least this (uniform would be 1/300). Measured: llama 0.66-0.75, gpt2 0.58-0.59.
MIN_TOP_PROBABILITY = 0.3
QK, VO, OUT = 10.0, 8.0, 30.0  # hf_models.peak's scales

# case -> key/value heads of 16 query heads, tied embeddings
LLAMA = {"mha": (16, False), "gqa8": (8, True), "gqa2": (2, False), "mqa": (1, True)}
# case -> scale_attn_by_inverse_layer_idx in config.json (None: the key is not there, GPT2Config's default false)
GPT2 = {"flag-absent": None, "flag-false": False, "flag-true": True}


pytestmark = pytest.mark.usefixtures("quiet_transformers")


def peaked_llama(groups: int, tied: bool, out):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=192, num_hidden_layers=2, num_attention_heads=16,
        num_key_value_heads=groups, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=50000.0,
        tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    _spread_norms(model)
    peak(model, QK, VO, OUT)
    model.save_pretrained(out)
    return model


def peaked_gpt2(flag: bool | None, out):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=8, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, scale_attn_by_inverse_layer_idx=bool(flag), bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    _spread_norms(model)
    peak(model, QK, VO, OUT)
    model.save_pretrained(out)
    if flag is None:  # as configs written before the option existed, or by hand
        saved = json.loads((out / "config.json").read_text())
        del saved["scale_attn_by_inverse_layer_idx"]
        (out / "config.json").write_text(json.dumps(saved, indent=2))
    return model


def _spread_norms(model) -> None:
    """Norm weights and biases off their constant init (a swapped or forgotten norm tensor then shows)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))


def _agree(want: torch.Tensor, got: torch.Tensor, what: str) -> float:
    """Assert argmax agreement at every position and every logit within ATOL; the largest difference."""
    moved = (want.argmax(-1) != got.argmax(-1)).sum().item()
    diff = (want - got).abs().max().item()
    print(f"{what}: max |logit diff| {diff:.2g}, argmax differs at {moved} of {want[..., 0].numel()} positions")
    assert moved == 0, f"{what}: the argmax differs at {moved} of {want[..., 0].numel()} positions (diff {diff:.3g})"
    assert diff <= ATOL, f"{what}: max |logit diff| {diff:.3g} > {ATOL}"
    return diff


def _import_export_compare(hf, hf_dir, tmp_path, name: str):
    """Import ``hf_dir``, compare with ``hf``; export, compare the exported transformers model with ours.
    Returns (our model, its config, the exported transformers model)."""
    from transformers import AutoModelForCausalLM

    from megatron_biomed.convert.exporter import export_hf
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.loading import load_model

    import_hf(hf_dir, tmp_path / "ckpt")
    model, cfg = load_model(tmp_path / "ckpt")
    t = tokens()
    want, ours = hf_logits(hf, t), our_logits(model, t, VOCAB)
    peaked = top_probability(want)
    print(f"{name}: mean top-token probability {peaked:.2f}, largest logit {want.abs().max():.1f}")
    assert peaked >= MIN_TOP_PROBABILITY, f"{name}: the test model is not peaked ({peaked:.3f})"
    _agree(want, ours, f"{name} import")

    export_hf(tmp_path / "ckpt", tmp_path / "out")
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(exported) is type(hf)
    back = hf_logits(exported, t)
    _agree(back, ours, f"{name} export")
    assert torch.equal(back, want), f"{name}: HF -> ours -> HF changed the logits"
    return model, cfg, exported


def _tied(hf) -> bool:
    return hf.get_output_embeddings().weight is hf.get_input_embeddings().weight


@pytest.mark.parametrize("case", list(LLAMA))
def test_llama_attention_groupings_and_ties(case, tmp_path):
    groups, tied = LLAMA[case]
    hf = peaked_llama(groups, tied, tmp_path / "hf")
    assert _tied(hf) == tied
    model, cfg, exported = _import_export_compare(hf, tmp_path / "hf", tmp_path, f"llama {case}")
    assert cfg.model.kv_heads == groups and cfg.model.num_attention_heads == 16
    assert cfg.model.tie_embeddings == tied and model.share_embeddings_and_output_weights == tied
    assert (model.output_layer.weight is None) == tied
    assert exported.config.num_key_value_heads == groups
    assert exported.config.tie_word_embeddings == tied and _tied(exported) == tied, f"{case}: the tie was not kept"


@pytest.mark.parametrize("case", list(GPT2))
def test_gpt2_scale_attn_by_inverse_layer_idx(case, tmp_path):
    """The option is reproduced (not refused): our model's logits are transformers' with it on, off, and with
    the key absent (false, GPT2Config's default); the export writes it back. With it on, the model is shown to
    depend on it: transformers with the option off moves the argmax at many positions."""
    flag = GPT2[case]
    hf = peaked_gpt2(flag, tmp_path / "hf")
    saved = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert ("scale_attn_by_inverse_layer_idx" in saved) == (flag is not None)
    model, cfg, exported = _import_export_compare(hf, tmp_path / "hf", tmp_path, f"gpt2 {case}")
    assert cfg.model.scale_attn_by_inverse_layer_idx is bool(flag)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["scale_attn_by_inverse_layer_idx"] is bool(flag)
    assert exported.config.scale_attn_by_inverse_layer_idx is bool(flag) and _tied(exported)
    if flag:
        off = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf", scale_attn_by_inverse_layer_idx=False)
        t = tokens()
        moved = (hf_logits(off.eval(), t).argmax(-1) != hf_logits(hf, t).argmax(-1)).float().mean().item()
        print(f"gpt2: ignoring scale_attn_by_inverse_layer_idx moves the argmax at {moved:.0%} of positions")
        assert moved >= 0.1, (
            f"the test model hardly depends on the option ({moved:.0%} of argmaxes move)"
        )  # measured 25%
