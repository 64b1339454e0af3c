"""Tasks by ``task.name``: pretraining and the fine-tuning tasks. Every registered task is in :data:`TASKS`
below, one line each; its module is imported when first used, so pretraining never imports fine-tuning code."""

from __future__ import annotations

from megatron_biomed.config.experiment import ConfigError, ExperimentConfig
from megatron_biomed.registry import Registry
from megatron_biomed.training.task import Task

# name -> "module:Class"; a class is called as ``Class(cfg, tokens)`` and is a training/task.py Task.
TASKS: Registry[type[Task]] = Registry(
    "task",
    {
        "pretrain": "megatron_biomed.training.lm_task:LanguageModelTask",
        "mc": "megatron_biomed.finetune.head_tasks:MultipleChoiceTask",
        "classify": "megatron_biomed.finetune.head_tasks:ClassificationTask",
        "ner": "megatron_biomed.finetune.ner:NERTask",
        "similarity": "megatron_biomed.finetune.text_heads:SimilarityTask",
        "multilabel": "megatron_biomed.finetune.text_heads:MultiLabelTask",
        "sft": "megatron_biomed.finetune.sft:SFTTask",
        "dpo": "megatron_biomed.finetune.dpo:DPOTask",
    },
    error=ConfigError,
    plural="tasks",
    hint="set task.name",
)


def task_class(cfg: ExperimentConfig) -> type[Task]:
    """The Task class of ``cfg.task.name`` (its module imported now)."""
    return TASKS.get(cfg.task.name)


def build_task(cfg: ExperimentConfig, tokens) -> Task:
    """The task ``cfg.task.name`` names, built (it reads and checks its data now, before any process group)."""
    return task_class(cfg)(cfg, tokens)
