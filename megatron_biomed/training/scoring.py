"""Forward-only passes that give one row of numbers per sample (scores, log-probs), on the training loop.

The trainer's schedule runs the model (any TP/PP/DP layout); a recording loss function on the last stage
writes each sample's values into a table by its ``index``; the table is summed over all ranks and divided by
how often each sample was computed (once per TP rank of the DP rank that held it), so every rank ends with
the whole table. Used by DPO's reference log-probs and by evaluation.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist

from megatron_biomed.training.task import metric, move_batch


class _Window:
    """Samples ``start .. start + n`` of ``samples``; past the end the last one repeats with index -1."""

    def __init__(self, samples: list[dict], start: int):
        self.samples, self.start = samples, start

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, i: int) -> dict:
        j = self.start + i
        if j < len(self.samples):
            return self.samples[j] | {"index": torch.tensor(j)}
        return self.samples[-1] | {"index": torch.tensor(-1)}


def score_samples(trainer, samples: list[dict], width: int, forward: Callable, progress=None) -> torch.Tensor:
    """[len(samples), width] float64: ``forward(batch, model) -> (output, values_of)`` runs one micro-batch,
    and ``values_of(output) -> [micro_batch, width]`` (called on the last stage) gives each sample's row."""
    n = len(samples)
    table = torch.zeros(n, width + 1, dtype=torch.float64)  # the values, then how often computed
    per_pass = trainer.cfg.train.global_batch_size
    names = list(trainer.task.metric_names)

    def step(data_iterator, model):
        batch = move_batch(next(data_iterator), model)
        output, values_of = forward(batch, model)

        def record(out):
            values = values_of(out).detach().double().cpu().view(-1, width)
            for k, idx in enumerate(batch["index"].tolist()):
                if idx >= 0:
                    table[idx, :width] += values[k]
                    table[idx, width] += 1.0
            zero = out.float().sum() * 0
            return zero, torch.tensor(1, dtype=torch.int), {name: metric(zero, 1) for name in names}

        return output, record

    for m in trainer.model:
        m.eval()
    with torch.no_grad():
        for start in range(0, n, per_pass):
            trainer.forward_pass(_Window(samples, start), step_func=step)
            if progress is not None:
                progress(min(start + per_pass, n))
    for m in trainer.model:
        m.train()
    if dist.is_initialized():
        dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        summed = table.to(dev)
        dist.all_reduce(summed)
        table = summed.cpu()
    if n and (table[:, width] == 0).any():
        raise RuntimeError("some samples were not scored (a bug in the scoring pass)")
    return table[:, :width] / table[:, width:].clamp_min(1)
