"""Multiple-choice and sequence-classification fine-tuning (BioMedLM's MedQA/MedMCQA/MMLU and PubMedQA/BioASQ).

A micro-batch of ``m`` items with ``C`` options each goes through the model as ``m * C`` sequences (the
schedule is told so by :meth:`rows_per_sample`); the head scores the position the input format names
(``task.input_format``, finetune/formats.py: the last real token, or the last ``[SEP]`` / ``<|ANSWER|>``);
the loss is the cross-entropy over each item's options (or labels), summed, and normalised by the number of items in the
global batch (megatron-core's per-token loss path with items as the unit).
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

from megatron_biomed.data.metrics import Score
from megatron_biomed.data.metrics.choices import accuracy, macro_f1
from megatron_biomed.data.metrics.classification import micro_f1
from megatron_biomed.data.tasks import ClassificationItem, MultipleChoiceItem
from megatron_biomed.finetune.data import EpochShuffled, TaskSetupError
from megatron_biomed.finetune.encoding import TruncationCount, encode_choices, encode_classification, head_encoding
from megatron_biomed.finetune.formats import InputFormatError, input_format, truncation_side
from megatron_biomed.finetune.task_base import FinetuneTask
from megatron_biomed.models.heads import HEAD_PREFIX, ScoringHead, attach_head, flatten_choices, head_forward
from megatron_biomed.training.task import metric, move_batch

log = logging.getLogger("megatron_biomed")


def choice_loss(labels: torch.Tensor, num_choices: int, scores: torch.Tensor):
    """Sum of cross-entropies over the items of the micro-batch; accuracy as [correct, items]."""
    logits = scores.view(-1, num_choices).float()
    loss = F.cross_entropy(logits, labels, reduction="sum")
    n = torch.tensor(labels.numel(), dtype=torch.int, device=loss.device)
    correct = (logits.argmax(-1) == labels).sum()
    return loss, n, {"loss": metric(loss, labels.numel()), "accuracy": metric(correct, labels.numel())}


# The benchmark types of head tasks: the evaluation suite macro-averages main metrics per type (BLURB's table).
TASK_TYPES = ("qa", "ner", "relation", "similarity", "doc_classification")


class HeadTask(FinetuneTask):
    """A scoring head on one position of each sequence (multiple choice, classification), laid out by
    ``task.input_format``."""

    metric_names = ("loss", "accuracy")
    per_token_loss = True
    # The kind of benchmark this head is scored as: the evaluation suite averages its tasks' main metrics per type
    # (BLURB's macro average): "qa", "ner", "relation", "similarity", "doc_classification". ``task.task_type``
    # overrides it per run (relation extraction is the classify task with task.task_type=relation).
    task_type = "qa"
    # The record type the task reads (a reader giving another is a TaskSetupError naming task.format).
    record_type: type = object
    # The input format's layout this task's items need (finetune/formats.py InputFormat).
    layout = "classification"
    # The metrics ``score`` reports, the default main one first; task.main_metric may move another to the front.
    score_metrics: tuple[str, ...] = ("acc",)
    head_class = ScoringHead

    def __init__(self, cfg, tokens=None):
        super().__init__(cfg, tokens)
        t = cfg.task
        if t.task_type and t.task_type not in TASK_TYPES:
            raise TaskSetupError(f"task.task_type={t.task_type!r}: expected one of {', '.join(TASK_TYPES)}")
        self.task_type = t.task_type or type(self).task_type
        for what, items in (("train", self.train_items), ("valid", self.valid_items or [])):
            bad = next((it for it in items if not isinstance(it, self.record_type)), None)
            if bad is not None:
                raise TaskSetupError(f"task {self.name} reads {self.record_type.__name__} records; task.format="
                                     f"{t.format!r} gives {type(bad).__name__} ({what} data): use a format made "
                                     "for this task")  # fmt: skip
        try:
            fmt = input_format(t.input_format)
            fmt.check_layout(self.layout, self.name)
            self.enc = head_encoding(self.tok, fmt, t.prompt_template, self.seq, truncation_side(fmt, t.truncation),
                                     self.eod)  # fmt: skip
        except InputFormatError as e:
            raise TaskSetupError(str(e)) from e
        self.pad_id = self.enc.pad_id
        if self.seq > cfg.model.seq_length:
            raise TaskSetupError(f"task.max_seq_length ({self.seq}) exceeds model.seq_length ({cfg.model.seq_length})")
        self.width = self._width(self.train_items)
        self.main_metric = self._main_metric(t.main_metric)

    def _main_metric(self, asked: str) -> str:
        """The metric ``score`` reports first: ``task.main_metric`` if set (one this task reports), else the
        task's default."""
        if not asked:
            return self.default_main_metric()
        if asked not in self.reported_metrics():
            raise TaskSetupError(f"task.main_metric={asked!r}: task {self.name} reports "
                                 f"{', '.join(self.reported_metrics())}")  # fmt: skip
        return asked

    def default_main_metric(self) -> str:
        return self.score_metrics[0]

    def reported_metrics(self) -> tuple[str, ...]:
        """The metric names :meth:`score` returns (any order)."""
        return self.score_metrics

    def main_first(self, scores: list[Score]) -> list[Score]:
        """``scores`` with the main metric's row moved to the front."""
        return sorted(scores, key=lambda s: s.metric != self.main_metric)

    def label_set(self, items) -> tuple[str, ...]:
        """The one label set ``items`` share (classification, multi-label), checked against task.num_labels."""
        names = {it.label_names for it in items}
        if len(names) != 1:
            raise TaskSetupError(f"{self.cfg.task.train_file}: items disagree on their label set: {sorted(names)}")
        labels = next(iter(names))
        if self.cfg.task.num_labels and self.cfg.task.num_labels != len(labels):
            raise TaskSetupError(f"task.num_labels={self.cfg.task.num_labels} but the data has {len(labels)} labels "
                                 f"{names}")  # fmt: skip
        return labels

    def new_parameter_prefixes(self):
        return (HEAD_PREFIX,)

    def build_model(self, cfg, tconfig):
        chunks = super().build_model(cfg, tconfig)
        attach_head(chunks, tconfig, self.head_outputs(), bias=self.head_bias, seed=cfg.train.seed,
                    head_class=self.head_class)  # fmt: skip
        return chunks

    def build_datasets(self, num_samples):
        train = EpochShuffled(self._encode(self.train_items, "train"), self.shuffle_seed)
        valid = EpochShuffled(self._encode(self.valid_items, "valid"), None) if self.valid_items else None
        return train, valid

    def _encode(self, items, what):
        count = TruncationCount()
        out = [self.encode(it, count) for it in items]
        log.info(count.summary(f"{self.name} {what}"))
        return out

    def loss(self, labels, scores):
        return choice_loss(labels, self.width, scores)

    # ---- scoring (tools/evaluate.py --head, the evaluation suite) ----
    # eval/runner.py head_scores runs the model on ``scoring_samples(items)``, keeps ``scoring_width`` numbers per
    # sample (the head's output row flattened) and hands that table to ``item_outputs``, whose result ``score``
    # and ``sample_rows`` read. Here one sample per item and the table itself: [items, width] scores.
    def scoring_samples(self, items, count) -> list[dict]:
        """The model inputs that score ``items`` (one per item here)."""
        return [self.encode(it, count) for it in items]

    @property
    def scoring_width(self) -> int:
        """How many numbers the head gives per scoring sample."""
        return self.width

    def item_outputs(self, items, table):
        """What ``score`` reads, from the [samples, scoring_width] table of head outputs."""
        return table

    def gold(self, item):
        """The index of the item's right answer among the head's outputs."""
        return item.label

    def score(self, items, outputs) -> list[Score]:
        """The metrics of the head's ``outputs`` ([items, width] scores, from eval/runner.py ``head_scores``) on
        ``items``, main metric first: accuracy here; subclasses report what their benchmark reports."""
        return [accuracy(outputs.argmax(-1).tolist(), [self.gold(it) for it in items])]

    def sample_rows(self, items, outputs) -> list[dict]:
        """One row per item for ``--log-samples``: the head's scores, the gold answer and the pick."""
        picks = outputs.argmax(-1).tolist()
        return [{"scores": s, "gold": self.gold(it), "pred": p} for s, it, p in zip(outputs.tolist(), items, picks)]

    def forward_step(self, data_iterator, model):
        batch = move_batch(next(data_iterator), model)
        flat = flatten_choices(batch, self.seq)
        scores = head_forward(model, flat)
        return scores, functools.partial(self.loss, batch["label"])


class MultipleChoiceTask(HeadTask):
    """``Linear(hidden, 1)`` (with bias) per (question, option) sequence; softmax over the options."""

    name = "mc"
    head_bias = True
    record_type = MultipleChoiceItem
    layout = "choices"

    def _width(self, items) -> int:
        widths = {len(it.options) for it in items}
        want = self.cfg.task.num_choices or max(widths)
        if widths != {want}:
            raise TaskSetupError(
                f"{self.cfg.task.train_file}: items have {sorted(widths)} options; a batch needs one number "
                f"(task.num_choices={want}); filter the file to one option count"
            )
        if self.valid_items and {len(it.options) for it in self.valid_items} != {want}:
            raise TaskSetupError(f"{self.cfg.task.valid_file}: items must have {want} options like the train file")
        return want

    def rows_per_sample(self) -> int:
        return self.width

    @classmethod
    def planned_rows(cls, cfg) -> int | None:
        return cfg.task.num_choices or None  # else the data's option count

    def head_outputs(self) -> int:
        return 1

    def encode(self, item, count):
        return encode_choices(self.tok, item, self.enc, count)

    def gold(self, item):
        return item.answer

    def describe(self) -> str:
        return f"multiple choice ({self.width} options), {len(self.train_items)} training items"


class ClassificationTask(HeadTask):
    """``Linear(hidden, num_labels, bias=False)`` on the format's read position (GPT2ForSequenceClassification)."""

    name = "classify"
    head_bias = False
    record_type = ClassificationItem
    score_metrics = ("acc", "macro_f1")

    def _width(self, items) -> int:
        self.label_names = self.label_set(items)
        n = len(self.label_names)
        unknown = [x for x in self.cfg.task.negative_labels if str(x) not in self.label_names]
        if unknown:
            raise TaskSetupError(f"task.negative_labels {unknown} are not labels of {self.cfg.task.train_file} "
                                 f"({', '.join(self.label_names)})")  # fmt: skip
        self.negative = tuple(self.label_names.index(str(x)) for x in self.cfg.task.negative_labels)
        if len(set(self.negative)) == n:
            raise TaskSetupError(f"task.negative_labels leaves no positive label of {self.label_names}")
        return n

    def reported_metrics(self) -> tuple[str, ...]:
        return self.score_metrics + ("micro_f1", "precision", "recall")

    def default_main_metric(self) -> str:
        # BLURB's relation tasks (ChemProt, DDI, GAD) report micro F1 over the positive classes (arXiv 2007.15779
        # Table 3); PubMedQA and BioASQ accuracy.
        return "micro_f1" if self.negative else "acc"

    def head_outputs(self) -> int:
        return self.width

    def encode(self, item, count):
        return encode_classification(self.tok, item, self.enc, count)

    def score(self, items, outputs) -> list[Score]:
        """Accuracy and macro-F1 over the labels (PubMedQA's and BioASQ's two metrics), and micro F1 with its
        precision and recall over the labels that are not ``task.negative_labels`` (relation extraction, BLURB;
        with no negative label it equals accuracy); the main metric (``task.main_metric``) first."""
        pred, gold = outputs.argmax(-1).tolist(), [it.label for it in items]
        rows = [accuracy(pred, gold), macro_f1(pred, gold, self.width)]
        if self.negative or self.main_metric in ("micro_f1", "precision", "recall"):
            rows += micro_f1(pred, gold, self.width, self.negative)
        return self.main_first(rows)

    def describe(self) -> str:
        return f"classification over {self.label_names}, {len(self.train_items)} training items"
