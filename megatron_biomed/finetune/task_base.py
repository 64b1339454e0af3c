"""What every fine-tuning task shares: its tokenizer (the run's, see tokenizer/for_run.py), its sequence length,
its training and validation records read and checked before any process group, the seeded epoch order, and
its options in the dry run's plan."""

from __future__ import annotations

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.finetune.data import TaskSetupError, read_items, read_train_items
from megatron_biomed.tokenizer import load_run_tokenizer
from megatron_biomed.training.task import Task


class FinetuneTask(Task):
    """A task trained from ``task.train_file`` in ``task.format`` and the ``task.train_files`` (each in its own
    format), and scored on ``task.valid_file`` (in ``task.format``).

    ``required_format``: the only task.format this task reads (None: any the data readers know), described in
    the error by ``format_description``."""

    required_format: str | None = None
    format_description: str = ""

    def __init__(self, cfg: ExperimentConfig, tokens=None):
        super().__init__(cfg)
        t = cfg.task
        if self.required_format is not None and t.format != self.required_format:
            raise TaskSetupError(f"task {self.name} reads {self.format_description}, not {t.format!r}")
        self.check_options(cfg)
        if not t.train_file and not t.train_files:
            raise TaskSetupError(f"task.train_file (or task.train_files) is not set (task {self.name})")
        self.tok = load_run_tokenizer(cfg)
        self.eod = self.tok.eod_id  # end of document, and the padding id
        self.seq = t.max_seq_length or cfg.model.seq_length
        self.train_items = read_train_items(cfg)
        self.valid_items = read_items(cfg, t.valid_file, "valid") if t.valid_file else None

    def check_options(self, cfg: ExperimentConfig) -> None:
        """Refuse task options this task cannot use (TaskSetupError), before any file is read."""

    def seq_length(self) -> int:
        return self.seq

    @property
    def shuffle_seed(self) -> int:
        """The seed of the training items' epoch order (``task.shuffle_seed``, else ``train.seed``)."""
        t = self.cfg.task
        return t.shuffle_seed if t.shuffle_seed is not None else self.cfg.train.seed

    @classmethod
    def plan_options(cls, cfg: ExperimentConfig) -> dict:
        t = cfg.task
        return {
            "format": t.format, "train_files": list(t.train_files), "input_format": t.input_format,
            "truncation": t.truncation, "max_seq_length": t.max_seq_length or cfg.model.seq_length,
            "prompt_template": t.prompt_template, "chat_template": t.chat_template, "pack": t.pack,
            "medmcqa_cop_base": t.medmcqa_cop_base, "dpo_beta": t.dpo_beta, "dpo_sft_weight": t.dpo_sft_weight,
            "negative_labels": list(t.negative_labels), "main_metric": t.main_metric, "task_type": t.task_type,
        }  # fmt: skip
