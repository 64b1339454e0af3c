"""Supervised fine-tuning (instruction tuning): next-token loss on response tokens only.

Examples (prompt/response or chat messages) are rendered with ``task.chat_template``, tokenised, and packed
into ``seq_length`` positions with document boundaries respected: position ids restart at every document and
the attention mask is block-diagonal, so a packed sequence computes exactly what its documents would alone.
The loss is summed over response tokens and normalised by the number of response tokens in the whole global
batch (megatron-core's per-token loss path), not as a mean of micro-batch means.
"""

from __future__ import annotations

import functools
import logging

import torch

from megatron_biomed.finetune.data import EpochShuffled, TaskSetupError, eod_id, load_tokenizer_for, read_items
from megatron_biomed.finetune.encoding import (
    TruncationCount,
    document_attention_mask,
    pack_documents,
    sft_document,
)
from megatron_biomed.training.task import Task, metric, move_batch

log = logging.getLogger("megatron_biomed")


def masked_token_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """(sum of masked token losses, number of masked tokens, metrics): megatron-core's 3-tuple."""
    losses = output_tensor.float().view(-1)
    mask = loss_mask.view(-1).float()
    total = torch.sum(losses * mask)
    n = mask.sum()
    return total, n.to(torch.int), {"lm loss": metric(total, n)}


class SFTTask(Task):
    name = "sft"
    metric_names = ("lm loss",)
    per_token_loss = True
    reports_perplexity = True

    def __init__(self, cfg, tokens=None):
        super().__init__(cfg)
        if cfg.task.format != "sft":
            raise TaskSetupError(f"task sft reads task.format=sft files (prompt/response or messages), "
                                 f"not {cfg.task.format!r}")  # fmt: skip
        if not cfg.task.train_file:
            raise TaskSetupError("task.train_file is not set (task sft)")
        self.tok = load_tokenizer_for(cfg)
        self.eod = eod_id(self.tok)
        self.seq = cfg.task.max_seq_length or cfg.model.seq_length
        self._train = read_items(cfg, cfg.task.train_file, "train")
        self._valid = read_items(cfg, cfg.task.valid_file, "valid") if cfg.task.valid_file else None

    def seq_length(self) -> int:
        return self.seq

    def _encode(self, examples, what):
        count = TruncationCount()
        docs = [sft_document(self.tok, ex, self.cfg.task.chat_template, self.eod) for ex in examples]
        samples = pack_documents(docs, self.seq, self.eod, self.cfg.task.pack, count)
        log.info("%s -> %d sequences of %d tokens", count.summary(f"sft {what}"), len(samples), self.seq)
        if not samples:
            raise TaskSetupError(f"sft {what}: no example has a response token within {self.seq} tokens")
        return samples

    def build_datasets(self, num_samples):
        seed = self.cfg.task.shuffle_seed if self.cfg.task.shuffle_seed is not None else self.cfg.train.seed
        train = EpochShuffled(self._encode(self._train, "train"), seed)
        valid = EpochShuffled(self._encode(self._valid, "valid"), None) if self._valid else None
        return train, valid

    def forward_step(self, data_iterator, model):
        batch = move_batch(next(data_iterator), model)
        mask = document_attention_mask(batch["doc_ids"])
        output = model(batch["tokens"], batch["position_ids"], mask, labels=batch["labels"])
        return output, functools.partial(masked_token_loss, batch["loss_mask"])

    def describe(self) -> str:
        return f"SFT on {len(self._train)} examples ({'packed' if self.cfg.task.pack else 'one per sequence'})"
