"""A checkpoint our training wrote (TP 2, with optimizer state) -> export -> transformers' logits equal ours;
importing that export gives back every model tensor bit for bit."""

from __future__ import annotations

import torch


def test_trained_checkpoint_exports_and_round_trips(tmp_path):
    from launch import BASE, run_pretrain
    from transformers import AutoModelForCausalLM

    from megatron_biomed.convert.exporter import export_hf
    from megatron_biomed.convert.importer import import_hf
    from megatron_biomed.inference.loading import load_model

    ckpt = tmp_path / "ckpt"
    sets = ["train.train_iters=2", f"checkpoint.save={ckpt}", "checkpoint.save_interval=2"]
    run_pretrain(2, BASE + sets + ["parallel.tensor_model_parallel_size=2"], tmp_path, preset="tiny-biomedlm")
    model, cfg = load_model(ckpt)
    assert cfg.model.scale_attn_by_inverse_layer_idx  # BioMedLM's option, trained with
    ours = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    export_hf(ckpt, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    vocab = cfg.model.vocab_size
    t = torch.randint(0, vocab, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = hf(t).logits
        got = model(t, torch.arange(20).unsqueeze(0).expand(2, 20), None)[..., :vocab]
    assert (want - got).abs().max().item() <= 1e-5 * want.abs().max().item()

    import_hf(tmp_path / "hf", tmp_path / "again", preset="tiny-biomedlm", tensor_model_parallel_size=2)
    again, _ = load_model(tmp_path / "again")
    back = {k: v for k, v in again.state_dict().items() if not k.endswith("_extra_state")}
    assert back.keys() == ours.keys()
    for name in ours:
        assert torch.equal(back[name], ours[name]), f"{name} changed in export -> import"
