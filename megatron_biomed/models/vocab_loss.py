"""The language-model loss over the real vocabulary, not Megatron's padded one.

Megatron pads the embedding and output layer to a multiple of ``make_vocab_size_divisible_by x TP`` rows
(300 -> 512 at TP 2). The padding rows are never a label, but their logits would still enter the softmax of
megatron-core's vocab-parallel cross entropy (each adds ``exp(logit)`` to the denominator), so a model
imported from Hugging Face would train on a higher loss than transformers computes on the same batch, and a
trained model would spend probability on ids that do not exist. :class:`RealVocabLoss` masks those columns
(logit -inf, so softmax 0 and gradient 0) in ``compute_language_model_loss`` -- the one method through which
megatron-core computes every language-model loss (GPTModel and HybridModel's forward, multi-token
prediction, our fine-tuning heads' output processor), so pretraining, SFT, DPO and evaluation all get it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def mask_padded_vocab(logits: torch.Tensor, vocab_size: int, first_id: int = 0) -> torch.Tensor:
    """``logits`` (``[..., n]``: the columns of ids ``first_id .. first_id + n - 1``, e.g. one
    tensor-parallel rank's slice of the padded vocabulary) with the columns of ids ``>= vocab_size`` set to
    -inf. Out of place (the autograd graph stays intact); the same tensor when no column is padding."""
    part = logits.shape[-1]
    real = vocab_size - first_id  # real columns here
    if real >= part:
        return logits
    padding = torch.arange(part, device=logits.device) >= max(real, 0)
    return logits.masked_fill(padding, float("-inf"))


def first_vocab_id(logits: torch.Tensor, padded_vocab: int | None, tp_group=None) -> int:
    """The id of ``logits``' first column: 0 when they hold the whole padded vocabulary (gathered, or TP 1),
    else this rank's slice start (megatron-core's VocabUtility: rank x vocab / TP)."""
    part = logits.shape[-1]
    if part == padded_vocab or tp_group is None or not dist.is_initialized():
        return 0
    return dist.get_rank(tp_group) * part


class RealVocabLoss:
    """Mixin for a megatron-core language model (before it in the bases): its language-model loss is
    computed over ids ``< real_vocab_size`` only (None: over every row, megatron-core's behaviour)."""

    real_vocab_size: int | None = None

    def compute_language_model_loss(self, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.real_vocab_size is not None:
            first = first_vocab_id(logits, getattr(self, "vocab_size", None), getattr(self, "tp_group", None))
            logits = mask_padded_vocab(logits, self.real_vocab_size, first)
        return super().compute_language_model_loss(labels, logits)
