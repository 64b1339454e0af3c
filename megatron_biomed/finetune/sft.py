"""Supervised fine-tuning (instruction tuning): next-token loss on response tokens only.

Examples (prompt/response or chat messages) are rendered with ``task.chat_template``, tokenised, and packed
into ``seq_length`` positions with document boundaries respected: position ids restart at every document and
the attention mask is block-diagonal, so a packed sequence computes exactly what its documents would alone.
Packing (``task.pack``) is used as far as the model's family allows (models/registry.py ``SegmentIsolation``):
an attention model reads the mask, a state-space model restarts its state where the position ids return to 0,
and a model that can do neither gets one example per sequence.
The loss is summed over response tokens and normalised by the number of response tokens in the whole global
batch (megatron-core's per-token loss path), not as a mean of micro-batch means.
"""

from __future__ import annotations

import functools
import logging

import torch

from megatron_biomed.finetune.data import EpochShuffled, TaskSetupError
from megatron_biomed.finetune.encoding import (
    TruncationCount,
    document_attention_mask,
    pack_documents,
    sft_document,
)
from megatron_biomed.finetune.task_base import FinetuneTask
from megatron_biomed.models.registry import get_family
from megatron_biomed.training.task import metric, move_batch

log = logging.getLogger("megatron_biomed")


def masked_token_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """(sum of masked token losses, number of masked tokens, metrics): megatron-core's 3-tuple."""
    losses = output_tensor.float().view(-1)
    mask = loss_mask.view(-1).float()
    total = torch.sum(losses * mask)
    n = mask.sum()
    return total, n.to(torch.int), {"lm loss": metric(total, n)}


class SFTTask(FinetuneTask):
    name = "sft"
    metric_names = ("lm loss",)
    per_token_loss = True
    reports_perplexity = True
    required_format = "sft"
    format_description = "task.format=sft files (prompt/response or messages)"

    @property
    def packs(self) -> bool:
        """Whether several examples share a sequence: ``task.pack``, if the model keeps documents apart."""
        return self.cfg.task.pack and get_family(self.cfg.model.family).segment_isolation(self.cfg).packs_documents

    def _encode(self, examples, what):
        count = TruncationCount()
        docs = [sft_document(self.tok, ex, self.cfg.task.chat_template, self.eod) for ex in examples]
        if self.cfg.task.pack and not self.packs:
            log.warning("sft %s: task.pack=true, but model family %s cannot keep packed examples apart: one "
                        "example per sequence", what, self.cfg.model.family)  # fmt: skip
        samples = pack_documents(docs, self.seq, self.eod, self.packs, count)
        log.info("%s -> %d sequences of %d tokens", count.summary(f"sft {what}"), len(samples), self.seq)
        if not samples:
            raise TaskSetupError(f"sft {what}: no example has a response token within {self.seq} tokens")
        return samples

    def build_datasets(self, num_samples):
        train = EpochShuffled(self._encode(self.train_items, "train"), self.shuffle_seed)
        valid = EpochShuffled(self._encode(self.valid_items, "valid"), None) if self.valid_items else None
        return train, valid

    def forward_step(self, data_iterator, model):
        batch = move_batch(next(data_iterator), model)
        # One example per sequence (padding after it) needs only the causal mask, which the layers imply.
        mask = document_attention_mask(batch["doc_ids"]) if self.packs else None
        output = model(batch["tokens"], batch["position_ids"], mask, labels=batch["labels"])
        return output, functools.partial(masked_token_loss, batch["loss_mask"])

    def describe(self) -> str:
        return f"SFT on {len(self.train_items)} examples ({'packed' if self.packs else 'one per sequence'})"
