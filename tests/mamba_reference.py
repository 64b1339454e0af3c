"""transformers' ``Mamba2ForCausalLM`` as the reference for our Mamba2 model: a tiny one with PEAKED weights
(scaled up so that logits are far from uniform and the mixers move them, so a leak of state from one
segment into the next changes the scores clearly), loaded into our model through the HF import adapter
(tests/models/mamba/test_convert.py: the import gives transformers' logits), and float64 log-likelihoods of
token sequences scored alone."""

from __future__ import annotations

from pathlib import Path

import torch

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.convert import get_adapter
from megatron_biomed.convert.hf_io import HFReader
from megatron_biomed.convert.importer import fill_model


def peaked_hf_mamba(m: ModelConfig, out: Path, seed: int = 0):
    """A random ``Mamba2ForCausalLM`` of ``m``'s shape, saved in ``out``. The tied embedding is scaled by 8
    (logits of a few units: top-token probabilities far from 1 / vocab), the mixers' projections by 10
    (in) and 30 (out) so each layer moves the residual stream, and the parameters transformers initialises to
    constants are spread."""
    import transformers  # optional: the tests using this module skip without it

    hf_cfg = get_adapter("mamba2").hf_config(m, {}, "float32")
    hf_cfg["vocab_size"] = m.padded_vocab_size(1)
    config = transformers.Mamba2Config(**{k: v for k, v in hf_cfg.items() if k not in ("architectures", "dtype")})
    torch.manual_seed(seed)
    hf = transformers.Mamba2ForCausalLM(config).eval()
    peak_mamba2(hf, {"in_proj.weight": 10.0, "out_proj.weight": 30.0, "embeddings.weight": 8.0})
    hf.save_pretrained(out)
    return hf


def peak_mamba2(hf, scales: dict[str, float]) -> None:
    """Make a transformers Mamba2 model's logits peaked: jitter D, the norms and dt_bias (off their constant
    initial values), then multiply each parameter whose name ends with a key of ``scales`` by its value."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("D", "norm.weight", "dt_bias")):
                p.add_(0.1 * torch.randn_like(p))
            for suffix, factor in scales.items():
                if name.endswith(suffix):
                    p.mul_(factor)


def load_hf_weights(model, m: ModelConfig, hf_dir: Path) -> None:
    """Our (unsharded) Mamba2 chunk takes the weights saved in ``hf_dir`` through the import adapter."""
    fill_model(model, m, get_adapter("mamba2"), HFReader(hf_dir))


def hf_logprobs(hf, inputs: list[int], targets: list[int], vocab: int) -> torch.Tensor:
    """``[len(inputs)]`` float64: log p(targets[t] | inputs[: t + 1]) from transformers' logits over the first
    ``vocab`` ids, the inputs run alone (batch 1, no padding)."""
    with torch.no_grad():
        logits = hf(torch.tensor([inputs])).logits[0, :, :vocab].double()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(targets)[:, None])[:, 0]


def peakedness(hf, ids: list[int], vocab: int) -> float:
    """Mean top-token probability over the positions of ``ids`` (1 / vocab would be uniform)."""
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0, :, :vocab].double()
    return float(torch.softmax(logits, -1).max(-1).values.mean())
