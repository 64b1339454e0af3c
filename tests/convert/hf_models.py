"""Tiny randomly initialised transformers models (built here, nothing downloaded) and logits helpers."""

from __future__ import annotations

from pathlib import Path

import torch
from mamba_reference import peak_mamba2

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


def peak(model, qk: float, vo: float, out: float) -> None:
    """Scale a GPT-2 or LLaMA model's weights so its logits are PEAKED and depend on the attention: query and
    key projections by ``qk`` (sharp attention patterns: a query head reading the wrong key/value group, or a
    wrong softmax scale, attends elsewhere), value and output projections by ``vo`` (attention moves the
    residual stream more than the token embedding does) and the final norm by ``out`` (logits of tens of units,
    far from uniform). A wrong mapping then moves the argmax at many positions, not only the logits a little."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(qk)
            elif name.endswith(("v_proj.weight", "o_proj.weight", "attn.c_proj.weight")):
                p.mul_(vo)
            elif name.endswith("attn.c_attn.weight"):  # Conv1D [in, Q | K | V]
                n = p.shape[0]
                p[:, : 2 * n].mul_(qk)
                p[:, 2 * n :].mul_(vo)
            elif name in ("model.norm.weight", "transformer.ln_f.weight"):
                p.mul_(out)


def tiny_mamba2(out: Path, seed: int = 0, **overrides):
    """A random Mamba2ForCausalLM saved in ``out``: 2 B/C groups (TP 2 splits them), 4 layers (PP 2 x VPP 2),
    d_inner 128 != B/C rows 32 (so a wrong order of in_proj's [z | x | B | C | dt] parts shows), untied.
    Peaked: in_proj x 4 and out_proj x 10 (each mixer moves the residual stream), the final norm x 20 (logits
    up to ~70, mean top-token probability 0.87), the constant-initialised parameters spread. (Larger mixer
    scales, as tests/mamba_reference.py's, amplify TP 2's different summation order in out_proj to 8e-6 of the
    logits' scale; these 2.6e-6.)"""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(seed)
    fields = dict(
        vocab_size=VOCAB, hidden_size=64, expand=2, head_dim=16, num_heads=8, n_groups=2, state_size=16,
        num_hidden_layers=4, conv_kernel=4, chunk_size=16, tie_word_embeddings=False, bos_token_id=0,
        eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    fields.update(overrides)
    model = Mamba2ForCausalLM(Mamba2Config(**fields)).eval()
    # Milder than mamba_reference's scales: TP2's split sum of out_proj stays well inside the tolerance.
    peak_mamba2(model, {"in_proj.weight": 4.0, "out_proj.weight": 10.0, "backbone.norm_f.weight": 20.0})
    model.save_pretrained(out)
    return model


def top_probability(logits: torch.Tensor) -> float:
    """Mean top-token probability over all positions (1 / vocab would be uniform)."""
    return torch.softmax(logits.double(), -1).max(-1).values.mean().item()


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
