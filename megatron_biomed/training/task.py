"""The seam between the training loop and what is trained: a ``Task``.

The ``Trainer`` owns everything that is the same for every objective (DDP, optimizer, schedule, checkpoints,
preemption, non-finite handling, logging). A task owns what differs: which model chunks are built (the body
plus any head), the datasets and their micro-batches, the forward step and its loss, and the metrics it
reports. Pretraining is one task (:class:`megatron_biomed.training.lm_task.LanguageModelTask`); the fine-tuning
tasks live in :mod:`megatron_biomed.finetune`.

Metrics travel as ``{name: tensor([numerator, denominator])}`` from each micro-batch's loss function; the loop
sums both over micro-batches and data-parallel ranks and reports numerator / denominator, so a metric is exact
over the global batch whatever the layout (a per-token loss counts tokens, an accuracy counts items).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.models.registry import build_model_chunks


def metric(numerator: torch.Tensor, denominator: torch.Tensor | float) -> torch.Tensor:
    """A metric contribution ``[numerator, denominator]`` (float64, detached)."""
    num = numerator.detach().double().reshape(())
    den = torch.as_tensor(denominator, dtype=torch.float64).reshape(()).to(num.device)
    return torch.stack([num, den])


class Task:
    """What the loop trains. Subclasses override the methods below; the loop calls nothing else.

    ``metric_names``: the metrics every loss function reports, main loss first (the loop all-reduces them in
    this order on every rank, so it must not depend on the rank). ``per_token_loss``: the loss function returns
    megatron-core's 3-tuple ``(sum of losses, count, metrics)`` and gradients are normalised by the count over
    the whole global batch (``TransformerConfig.calculate_per_token_loss``) instead of as a mean of micro-batch
    means.
    """

    name: str = "task"
    metric_names: Sequence[str] = ("loss",)
    per_token_loss: bool = False
    # The main metric is a mean token cross-entropy (validation also reports exp of it).
    reports_perplexity: bool = False

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg

    # ---- model ----
    def build_model(self, cfg: ExperimentConfig, tconfig) -> list:
        """The model chunks this rank holds (one per virtual pipeline stage), before DDP wrapping."""
        return build_model_chunks(cfg, tconfig)

    def configure(self, tconfig) -> None:
        """Adjust the TransformerConfig the schedule reads (called once, before the model is built)."""
        tconfig.calculate_per_token_loss = self.per_token_loss

    def new_parameter_prefixes(self) -> tuple[str, ...]:
        """State-dict key prefixes of parameters this task adds to the pretrained body (e.g. a head): a run
        started with ``checkpoint.init_from`` keeps them freshly initialised (even where the checkpoint holds
        them, a fine-tune's head) unless ``checkpoint.init_with_head`` loads them too."""
        return ()

    # ---- data ----
    def build_datasets(self, num_samples: tuple[int, int]) -> tuple[Any, Optional[Any]]:
        """(train, valid) datasets indexable by sample number, each item a dict of tensors."""
        raise NotImplementedError

    def extra_eval_datasets(self) -> dict:
        """Named validation sets evaluated and reported separately at every eval interval."""
        return {}

    def rows_per_sample(self) -> int:
        """Sequences one sample puts through the model (options of a question, chosen + rejected)."""
        return 1

    def seq_length(self) -> int:
        return self.cfg.model.seq_length

    # ---- the dry run's plan (before any data is read) ----
    @classmethod
    def planned_rows(cls, cfg: ExperimentConfig) -> int | None:
        """Sequences one sample will put through the model, as far as the config says (None: the data decides)."""
        return 1

    @classmethod
    def plan_options(cls, cfg: ExperimentConfig) -> dict:
        """The task's options for the dry run's plan, by config field name ({}: none to show)."""
        return {}

    def prepare(self, trainer) -> None:
        """Run once after the model is loaded and before the first step (e.g. reference log-probs)."""

    # ---- step ----
    def forward_step(self, data_iterator, model) -> tuple[torch.Tensor, Callable]:
        """megatron-core's forward_step_func: (output tensor, loss function of the output)."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


def move_batch(batch: dict, model) -> dict:
    """The micro-batch's tensors on the model's device (already there when data/prefetch.py made the batch;
    ``non_blocking``: a pinned batch is copied without the host waiting)."""
    dev = next(model.parameters()).device
    return {k: (v.to(dev, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
