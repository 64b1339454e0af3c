"""Registry of tasks by ``task.name``: pretraining and the fine-tuning tasks (new ones register here)."""

from __future__ import annotations

import importlib
from typing import Callable

from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.training.task import Task

# name -> "module:Class"; imported when used, so that pretraining never imports the fine-tuning code.
_TASKS: dict[str, str | Callable] = {
    "pretrain": "megatron_biomed.training.lm_task:LanguageModelTask",
    "mc": "megatron_biomed.finetune.head_tasks:MultipleChoiceTask",
    "classify": "megatron_biomed.finetune.head_tasks:ClassificationTask",
    "sft": "megatron_biomed.finetune.sft:SFTTask",
    "dpo": "megatron_biomed.finetune.dpo:DPOTask",
}


def register_task(name: str, factory: str | Callable) -> None:
    """``factory(cfg, tokens) -> Task``, or ``"module:Class"`` imported on first use. The name also becomes a
    valid ``task.name`` for config validation."""
    from megatron_biomed.config import task as task_config

    _TASKS[name] = factory
    if name not in task_config.TASK_NAMES:
        task_config.TASK_NAMES = (*task_config.TASK_NAMES, name)


def task_names() -> tuple[str, ...]:
    return tuple(_TASKS)


def build_task(cfg: ExperimentConfig, tokens) -> Task:
    name = cfg.task.name
    if name not in _TASKS:
        raise ConfigError(f"task.name={name!r}: known tasks are {', '.join(_TASKS)}")
    factory = _TASKS[name]
    if isinstance(factory, str):
        module, cls = factory.split(":")
        factory = getattr(importlib.import_module(module), cls)
    return factory(cfg, tokens)
