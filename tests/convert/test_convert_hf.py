"""HF -> our checkpoint -> HF, proven by logits (fp32, CPU): transformers' own model is the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_models import FAMILIES, VOCAB, hf_logits, our_logits, tokens

# Relative to the largest logit. Measured at the layouts of test_layouts_match_transformers: gpt2 1.7e-7 (TP2),
# 2.9e-7 (PP2); llama 3.8e-7 (every layout); mamba2 (peaked, logits up to ~70) 2.6e-6 at TP2 (out_proj's partial
# sums), 0 without TP; at TP1 import: gpt2 and llama below 4e-7.
ATOL = 1e-5
LAYOUT_FAMILIES = (*FAMILIES, "mamba2")


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("_extra_state")}


@pytest.mark.parametrize("family", FAMILIES)
def test_import_matches_transformers(imported, family):
    from megatron_biomed.inference.loading import load_model

    hf, _, ckpt = imported[family]
    model, cfg = load_model(ckpt)
    t = tokens()
    want, got = hf_logits(hf, t), our_logits(model, t, VOCAB)
    diff = (want - got).abs().max().item()
    assert diff <= ATOL * want.abs().max().item(), f"{family}: max |logit diff| {diff:.3g}"
    assert cfg.model.family == family and cfg.model.vocab_size == VOCAB
    assert model.embedding.word_embeddings.weight.shape[0] == 512  # 300 padded to 128 x TP 2


@pytest.mark.parametrize("family", FAMILIES)
def test_training_step_loss_is_transformers_loss(imported, family):
    """One pretraining step at TP 1 (LanguageModelTask's forward step, loss and backward, as the trainer runs
    them) from the imported checkpoint: its loss is transformers' on the same batch, and the 212 padding rows
    of the output layer get no gradient. (TP 2 and the other layouts: test_layouts_match_transformers.)"""
    from megatron_biomed.data.gpt_dataset import TokenInfo
    from megatron_biomed.inference.loading import load_model
    from megatron_biomed.training.lm_task import LanguageModelTask

    hf, _, ckpt = imported[family]
    model, cfg = load_model(ckpt)
    model.train()
    t = tokens()
    b, s = t.shape[0], t.shape[1] - 1
    batch = {"tokens": t[:, :-1], "labels": t[:, 1:], "loss_mask": torch.ones(b, s),
             "position_ids": torch.arange(s).expand(b, s)}  # fmt: skip
    cfg.data.mock = True  # the batch is given here: no data blend to check
    output, loss_of = LanguageModelTask(cfg, TokenInfo(VOCAB, 0)).forward_step(iter([batch]), model)
    loss, _ = loss_of(output)
    loss.backward()
    with torch.no_grad():
        hf_loss = hf(t, labels=t).loss.item()
    assert abs(loss.item() - hf_loss) <= 1e-5 * hf_loss, f"{family}: training loss {loss.item()} vs {hf_loss}"
    out = model.output_layer.weight if not cfg.model.tie_embeddings else model.embedding.word_embeddings.weight
    assert out.grad[VOCAB:].abs().max().item() == 0.0 and out.grad[:VOCAB].abs().max().item() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_export_loads_in_transformers_and_round_trips(imported, family, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from megatron_biomed.convert.exporter import export_hf
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.loading import load_model

    hf, _, ckpt = imported[family]
    model, _ = load_model(ckpt)
    ours = _state(model)
    result = export_hf(ckpt, tmp_path / "hf", max_shard_size=200_000)  # several shards
    out = tmp_path / "hf"
    assert len(result.files) > 1 and (out / "model.safetensors.index.json").is_file()
    assert result.largest_shard_bytes <= 200_000 + 64 * 300 * 4  # a shard overflows by at most one tensor
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == VOCAB and config["eos_token_id"] == 0
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == 0
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    assert exported.get_input_embeddings().weight.shape[0] == VOCAB  # padding rows removed
    t = tokens(seed=3)
    assert torch.equal(hf_logits(exported, t), hf_logits(hf, t))  # HF -> ours -> HF is bit for bit
    diff = (hf_logits(exported, t) - our_logits(model, t, VOCAB)).abs().max().item()
    assert diff <= ATOL, f"{family}: exported model's logits differ from ours by {diff:.3g}"
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.decode(tok("metformin therapy")["input_ids"]) == "metformin therapy"

    import_hf(out, tmp_path / "again", tensor_model_parallel_size=2)
    again, _ = load_model(tmp_path / "again")
    back = _state(again)
    assert back.keys() == ours.keys()
    for name in ours:
        assert torch.equal(back[name], ours[name]), f"{name} changed in export -> import"


def test_export_dtype_flag(imported, tmp_path):
    from safetensors import safe_open

    from megatron_biomed.convert.exporter import export_hf

    export_hf(imported["llama"][2], tmp_path, dtype="bfloat16")
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}


def test_layouts_match_transformers(imported, tmp_path):
    """TP2 x PP2, TP2, PP2 and PP2 x VPP2 on 4 gloo ranks (one torchrun for all families and layouts), Mamba2
    included (peaked; 2 B/C groups split over TP 2, its 4 layers over PP 2): each layout's logits are
    transformers' on the weights it imported."""
    from launch import run_tool

    t = tokens()
    torch.save(t, tmp_path / "tokens.pt")
    args = ["--tokens", str(tmp_path / "tokens.pt"), "--out", str(tmp_path)]
    for family in LAYOUT_FAMILIES:
        args += ["--checkpoint", f"{family}={imported[family][2]}"]
    run_tool(Path(__file__).with_name("layout_worker.py"), 4, args, tmp_path, timeout=300)
    for family in LAYOUT_FAMILIES:
        hf = imported[family][0]
        want = hf_logits(hf, t)
        with torch.no_grad():
            hf_loss = hf(t, labels=t).loss.item()
        for tp, pp, vpp in ((2, 2, None), (2, 1, None), (1, 2, None), (1, 2, 2)):
            name = f"{family}_tp{tp}_pp{pp}_vpp{vpp}"
            got = torch.load(tmp_path / f"{name}.pt")
            diff = (want - got).abs().max().item()
            print(f"{name}: max |logit diff| {diff:.2g}, {diff / want.abs().max():.2g} of the largest logit")
            moved = (want.argmax(-1) != got.argmax(-1)).sum().item()
            assert moved == 0, f"{name}: the argmax differs from transformers' at {moved} positions (diff {diff:.3g})"
            assert diff <= ATOL * want.abs().max().item(), f"{family} TP{tp} PP{pp} VPP{vpp}: max |diff| {diff:.3g}"
            # The pretraining loss at this layout (300 ids padded to 512, mamba2's to 320: the padding columns
            # on the second rank at TP 2) is transformers' loss: the padding is outside the softmax.
            loss = torch.load(tmp_path / f"{name}_loss.pt")
            assert abs(loss - hf_loss) <= 1e-5 * hf_loss, f"{name}: training loss {loss} vs transformers' {hf_loss}"


def test_csrc_kernels_keep_the_inverse_layer_scale(imported):
    """The csrc choice (PyTorch fallback on CPU) builds its own attention; the per-layer scale must survive."""
    from megatron_biomed.checkpoint import run_experiment_config
    from megatron_biomed.inference.loading import load_model

    hf, _, ckpt = imported["gpt2"]
    _, cfg = run_experiment_config(ckpt)
    cfg.model.kernels = "csrc"
    model, _ = load_model(ckpt, cfg)
    t = tokens()
    want, got = hf_logits(hf, t), our_logits(model, t, VOCAB)
    assert (want - got).abs().max().item() <= ATOL * want.abs().max().item()


def test_cli_export_and_refused_import(imported, tmp_path, capsys):
    from megatron_biomed.convert.cli import main, parse_size

    assert parse_size("5GB") == 5 * 2**30 and parse_size("500MB") == 500 * 2**20
    ckpt = imported["gpt2"][2]
    assert main(["export", "--load", str(ckpt), "--out", str(tmp_path / "hf"), "--max-shard-size", "100KB"]) == 0
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    hf_dir = imported["gpt2"][1]
    code = main(["import", "--hf-dir", str(hf_dir), "--save", str(tmp_path / "x"), "--preset", "biomedlm-2.7b"])
    assert code == 2 and "is not the architecture of preset 'biomedlm-2.7b'" in capsys.readouterr().err
