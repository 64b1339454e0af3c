"""Pretraining as a task: next-token loss on megatron-core GPTDatasets over .bin/.idx blends."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from megatron_biomed.data.gpt_dataset import TokenInfo, build_gpt_datasets, parse_blend
from megatron_biomed.data.preflight import check_prefixes
from megatron_biomed.errors import BiomedError
from megatron_biomed.training.task import Task, metric, move_batch


class DataSplitEmpty(BiomedError, ValueError):
    """The configured split leaves no training data."""


def lm_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Mean token loss of one micro-batch (megatron-core divides by the number of micro-batches)."""
    losses = output_tensor.float().view(-1)
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask) / mask.sum().clamp_min(1.0)
    return loss, {"lm loss": metric(loss, 1.0)}


class LanguageModelTask(Task):
    """Next-token prediction over the data blend (Megatron-LM's pretrain_gpt)."""

    name = "pretrain"
    metric_names = ("lm loss",)
    per_token_loss = False  # a mean of micro-batch means, as Megatron-LM's pretraining
    reports_perplexity = True

    def __init__(self, cfg, tokens: TokenInfo):
        super().__init__(cfg)
        self.tokens = tokens
        self.check_data()

    def check_data(self) -> None:
        """Every .bin/.idx prefix the run reads (data.blend, train.eval_corpora), checked against the tokenizer
        and the index cache while the task is built: before the process group, the model and step 1
        (:mod:`megatron_biomed.data.preflight`; raises DataError naming the file)."""
        d = self.cfg.data
        vocab = self.tokens.vocab_size if self.tokens is not None else None
        if not d.mock:
            check_prefixes(parse_blend(d.blend)[0], vocab_size=vocab, cache_dir=d.cache_dir)
        corpora = [prefix for _, prefix in self._eval_corpora()]
        check_prefixes(corpora, vocab_size=vocab, cache_dir=d.cache_dir, field="train.eval_corpora")

    def _eval_corpora(self) -> list[tuple[str, str]]:
        """``train.eval_corpora`` as (name, prefix): each PREFIX or NAME=PREFIX."""
        return [tuple(s.split("=", 1)) if "=" in s else (Path(s).name, s) for s in self.cfg.train.eval_corpora]

    def build_datasets(self, num_samples):
        t, d = self.cfg.train, self.cfg.data
        train, valid, _ = build_gpt_datasets(
            d.blend,
            seq_length=self.cfg.model.seq_length,
            seed=t.seed,
            num_samples=(num_samples[0], num_samples[1], t.eval_iters * t.global_batch_size),
            tokens=self.tokens,
            split=d.split,
            cache_dir=d.cache_dir,
            mock=d.mock,
            reset_position_ids=d.reset_position_ids,
            reset_attention_mask=d.reset_attention_mask,
            eod_mask_loss=d.eod_mask_loss,
            sample_layout=d.sample_layout,
        )
        if train is None:
            raise DataSplitEmpty(f"data.split={d.split!r} leaves no training data")
        return train, valid

    def extra_eval_datasets(self) -> dict:
        """``train.eval_corpora``: each prefix (or NAME=PREFIX) whole, as a validation set of its own."""
        t, d = self.cfg.train, self.cfg.data
        out = {}
        for name, prefix in self._eval_corpora():
            _, valid, _ = build_gpt_datasets(
                [prefix],
                seq_length=self.cfg.model.seq_length,
                seed=t.seed,
                num_samples=(0, max(1, t.eval_iters) * t.global_batch_size, 0),
                tokens=self.tokens,
                split="0,1,0",
                cache_dir=d.cache_dir,
                reset_position_ids=d.reset_position_ids,
                reset_attention_mask=d.reset_attention_mask,
                eod_mask_loss=d.eod_mask_loss,
                sample_layout=d.sample_layout,
            )
            out[name] = valid
        return out

    def forward_step(self, data_iterator, model):
        batch = move_batch(next(data_iterator), model)
        output = model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"), labels=batch["labels"])
        return output, functools.partial(lm_loss, batch["loss_mask"])
