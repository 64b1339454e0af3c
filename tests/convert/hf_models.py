"""Tiny randomly initialised transformers models (built here, nothing downloaded) and logits helpers."""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 300  # not a multiple of 128: the import pads, the export must drop the padding
FAMILIES = ("gpt2", "llama")


def tiny_gpt2(out: Path, seed: int = 0, **overrides):
    """A random GPT2LMHeadModel saved with save_pretrained in ``out`` (BioMedLM's options on)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    fields = dict(
        vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=4, n_head=4, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=False, bos_token_id=0, eos_token_id=0,
        pad_token_id=0,
    )  # fmt: skip
    fields.update(overrides)
    model = GPT2LMHeadModel(GPT2Config(**fields)).eval()
    _randomize_norms(model)
    model.save_pretrained(out)
    return model


def tiny_tokenizer(out: Path) -> None:
    """A byte-level BPE of VOCAB ids (``<|endoftext|>`` = 0) trained here on a few sentences, saved in ``out``."""
    from megatron_biomed.tokenizer import TokenizerTrainConfig, train_bpe_tokenizer

    texts = ["Patients with type 2 diabetes were given metformin.", "The tumour responded to therapy."] * 20
    train_bpe_tokenizer(texts, TokenizerTrainConfig(vocab_size=VOCAB, min_frequency=1), output_dir=out)


def tiny_llama(out: Path, seed: int = 0, **overrides):
    """A random LlamaForCausalLM (GQA: 4 heads, 2 key/value groups; untied) saved in ``out``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    fields = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=50000.0,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    fields.update(overrides)
    model = LlamaForCausalLM(LlamaConfig(**fields)).eval()
    _randomize_norms(model)
    model.save_pretrained(out)
    return model


def _randomize_norms(model) -> None:
    """Norm weights and biases away from 1 / 0 (a swapped or forgotten norm tensor then shows)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)


def hf_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens).logits.float()


def our_logits(model, tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """Logits of our unsharded GPTModel on ``tokens`` [b, s], padding columns dropped."""
    b, s = tokens.shape
    position_ids = torch.arange(s).unsqueeze(0).expand(b, s)
    with torch.no_grad():
        return model(tokens, position_ids, None)[..., :vocab].float()


def tokens(batch: int = 2, seq: int = 24, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, seq), generator=g)


def save_bin(model, out: Path, max_shard_bytes: int | None = None) -> None:
    """``model`` as transformers 4's ``save_pretrained(safe_serialization=False)`` wrote it (transformers 5
    writes only safetensors): config.json and ``pytorch_model.bin``, or with ``max_shard_bytes``
    ``pytorch_model-0000i-of-0000n.bin`` shards and ``pytorch_model.bin.index.json``; pickled state dicts
    of plain tensors, tied copies left out."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k not in tied}
    if max_shard_bytes is None:
        torch.save(state, out / "pytorch_model.bin")
        return
    shards, size = [{}], 0
    for name, t in state.items():
        if shards[-1] and size + t.numel() * t.element_size() > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += t.numel() * t.element_size()
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, out / file)
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
