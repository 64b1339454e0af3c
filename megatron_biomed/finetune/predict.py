"""Scores of a fine-tuned head on items, in one process (any saved TP/PP layout loads here)."""

from __future__ import annotations

import torch

from megatron_biomed.checkpoint import checkpoint_path, load_checkpoint
from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.finetune.encoding import TruncationCount
from megatron_biomed.inference.loading import saved_padded_vocab
from megatron_biomed.models.common import transformer_config
from megatron_biomed.models.heads import flatten_choices, head_forward
from megatron_biomed.parallel.initialize import single_process_config


def load_single_process(cfg: ExperimentConfig, task, checkpoint: str):
    """The task's model (body and head) on one process with the weights of ``checkpoint`` (saved at any
    layout: the vocabulary padding follows the checkpoint's)."""

    path = checkpoint_path(checkpoint)
    one = single_process_config(cfg, saved_padded_vocab(path))
    tconfig = transformer_config(one)
    task.configure(tconfig)
    model = task.build_model(one, tconfig)[0]
    load_checkpoint(path, [model], weights_only=True)
    return model.eval()


@torch.no_grad()
def score_items(model, task, items, batch_size: int = 8):
    """The head's outputs for ``items`` as the task lays them out (``task.item_outputs``): [n, width] option scores
    or label logits for multiple choice and classification, per-word tag logits for NER."""
    out = []
    count = TruncationCount()
    samples = task.scoring_samples(items, count)
    for start in range(0, len(samples), batch_size):
        enc = samples[start : start + batch_size]
        batch = {k: torch.stack([e[k] for e in enc]) for k in ("tokens", "last_index") if k in enc[0]}
        batch = flatten_choices(batch, batch["tokens"].shape[-1])
        out.append(head_forward(model, batch).reshape(len(enc), -1))
    return task.item_outputs(items, torch.cat(out))
