"""Fine-tuning data: task files read, encoded once, and served in a fixed order that resumes exactly."""

from __future__ import annotations

import logging

import numpy as np
import torch

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.data.tasks import READERS, ReadReport, TaskDataError, format_report, read_task_file
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


def read_items(cfg: ExperimentConfig, path: str, what: str, fmt: str | None = None) -> list:
    """Records of the task file ``path`` (format ``fmt``, default ``task.format``), logging the count and
    skipped ones."""
    t = cfg.task
    fmt = fmt or t.format
    if not fmt:
        raise TaskSetupError(f"task.format is not set: give the format of {path} (e.g. medqa, pubmedqa, sft)")
    kw = dict(t.reader_options) if fmt == t.format else {}  # options of the task.format reader only
    if fmt == "medmcqa":
        if t.medmcqa_cop_base not in (0, 1):
            raise TaskSetupError(
                "task.medmcqa_cop_base must be 0 or 1: MedMCQA's 'cop' is 0-based in the Hugging Face release and "
                "1-based in the original one; say which your file uses"
            )
        kw["cop_base"] = t.medmcqa_cop_base
    report = ReadReport(path=str(path))
    try:
        items = read_task_file(path, fmt, skip_bad=t.skip_bad, report=report, **kw)
    except TaskDataError as e:
        raise TaskSetupError(f"{e} (use task.skip_bad=true to skip bad records)") from e
    except TypeError as e:  # a task.reader_options key the reader does not take
        raise TaskSetupError(f"task.reader_options {t.reader_options} do not fit the {fmt} reader: {e}") from e
    log.info("%s data (%s): %s", what, fmt, format_report(report))
    if not items:
        raise TaskSetupError(f"{path}: no usable {fmt} records")
    return items


def train_sources(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """(format, path) of every training file: ``task.train_file`` in ``task.format``, then each
    ``task.train_files`` entry ("FORMAT:PATH", or "PATH" in ``task.format``)."""
    t = cfg.task
    out = [(t.format, t.train_file)] if t.train_file else []
    for entry in t.train_files:
        fmt, sep, path = str(entry).partition(":")
        if not sep or fmt not in READERS:  # a bare path (possibly with a colon of its own)
            fmt, path = t.format, str(entry)
        if not path:
            known = ", ".join(READERS)
            raise TaskSetupError(f"task.train_files entry {entry!r}: expected FORMAT:PATH (FORMAT one of {known})")
        out.append((fmt, path))
    return out


def read_train_items(cfg: ExperimentConfig) -> list:
    """The items of every training file (:func:`train_sources`), in order, each file read and counted alone."""
    items: list = []
    for fmt, path in train_sources(cfg):
        items += read_items(cfg, path, f"train {path}" if cfg.task.train_files else "train", fmt)
    return items
