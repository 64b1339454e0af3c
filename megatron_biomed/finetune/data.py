"""Fine-tuning data: task files read, encoded once, and served in a fixed order that resumes exactly."""

from __future__ import annotations

import logging

import numpy as np
import torch

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.data.tasks import ReadReport, TaskDataError, format_report, read_task_file
from megatron_biomed.errors import BiomedError

log = logging.getLogger("megatron_biomed")


class TaskSetupError(BiomedError, ValueError):
    """The task's configuration or data cannot work (the message says what to change)."""


class EpochShuffled:
    """Sample ``i`` is item ``perm_e[i % n]`` of epoch ``e = i // n``, each epoch its own seeded permutation:
    indexable without end (the micro-batch iterator's ``consumed_samples`` resumes the same order)."""

    def __init__(self, samples: list[dict], seed: int | None):
        self.samples = samples
        self.seed = seed
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))
        return self._perms[epoch]

    def __getitem__(self, i: int) -> dict:
        n = len(self.samples)
        j = i % n if self.seed is None else int(self._perm(i // n)[i % n])
        return self.samples[j] | {"index": torch.tensor(j)}


def read_items(cfg: ExperimentConfig, path: str, what: str) -> list:
    """Records of the task file ``path`` (format ``task.format``), logging the count and skipped ones."""
    t = cfg.task
    if not t.format:
        raise TaskSetupError(f"task.format is not set: give the format of {path} (e.g. medqa, pubmedqa, sft)")
    kw = {}
    if t.format == "medmcqa":
        if t.medmcqa_cop_base not in (0, 1):
            raise TaskSetupError(
                "task.medmcqa_cop_base must be 0 or 1: MedMCQA's 'cop' is 0-based in the Hugging Face release and "
                "1-based in the original one; say which your file uses"
            )
        kw["cop_base"] = t.medmcqa_cop_base
    report = ReadReport(path=str(path))
    try:
        items = read_task_file(path, t.format, skip_bad=t.skip_bad, report=report, **kw)
    except TaskDataError as e:
        raise TaskSetupError(f"{e} (use task.skip_bad=true to skip bad records)") from e
    log.info("%s data: %s", what, format_report(report))
    if not items:
        raise TaskSetupError(f"{path}: no usable {t.format} records")
    return items
