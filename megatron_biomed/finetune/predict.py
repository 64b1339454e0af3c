"""Scores of a fine-tuned head on items, in one process (any saved TP/PP layout loads here)."""

from __future__ import annotations

import torch

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.finetune.encoding import TruncationCount
from megatron_biomed.models.heads import flatten_choices, head_forward


def load_single_process(cfg: ExperimentConfig, task, checkpoint: str):
    """The task's model (body and head) on one process with the weights of ``checkpoint`` (saved at any
    layout: the vocabulary padding follows the checkpoint's)."""
    from megatron_biomed.inference.loading import saved_padded_vocab, single_process_config
    from megatron_biomed.models.common import transformer_config
    from megatron_biomed.training.checkpointing import checkpoint_path, load_checkpoint

    path = checkpoint_path(checkpoint)
    one = single_process_config(cfg, saved_padded_vocab(path))
    tconfig = transformer_config(one)
    task.configure(tconfig)
    model = task.build_model(one, tconfig)[0]
    load_checkpoint(path, [model], weights_only=True)
    return model.eval()


@torch.no_grad()
def score_items(model, task, items, batch_size: int = 8) -> torch.Tensor:
    """[n, width] head scores (option scores, or label logits) of ``items``."""
    out = []
    count = TruncationCount()
    for start in range(0, len(items), batch_size):
        enc = [task.encode(it, count) for it in items[start : start + batch_size]]
        batch = {k: torch.stack([e[k] for e in enc]) for k in ("tokens", "last_index")}
        batch = flatten_choices(batch, batch["tokens"].shape[-1])
        out.append(head_forward(model, batch).view(len(enc), -1))
    return torch.cat(out)
