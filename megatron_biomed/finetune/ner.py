"""Named-entity recognition: a token-classification head over BIO tags (BLURB's BC5CDR, NCBI-disease, BC2GM, JNLPBA).

Words become tokens with the run's tokenizer one word at a time, the first as written and every later one with a
leading space. Our choice: that is how the words read in running text, which is what a causal LM was pretrained
on; Hugging Face's run_ner gives GPT-2/RoBERTa/BLOOM every word a leading space (``add_prefix_space=True``,
huggingface/transformers examples/pytorch/token-classification/run_ner.py @ 0a8c149), which differs only at the
first word. A word's tag is trained and read on one of its sub-tokens (``task.label_subtoken``): the first, as
run_ner does by default (``label_all_tokens=False``: the other sub-tokens get -100, ignored), or the last, the
only one a causal model reads after seeing the whole word.

A sequence longer than the task's ``max_seq_length`` is cut into windows of that length starting every
``task.window_stride`` tokens (run_ner instead truncates at max_seq_length); training uses every window. A word's
prediction is taken from the window where it has the most context (google-research/bert run_squad.py
``_check_is_max_context`` @ e13c1f3: the larger of min(left, right) context); a causal model sees only the left
context, so that is the earliest window that holds the word's labelled sub-token.

The loss is the cross-entropy over labelled tokens, summed and normalised by the number of labelled tokens of the
global batch (megatron-core's per-token loss path, as HeadTask). The tag set comes from the train file (or
``task.labels``) and is written to ``task.labels``, so a checkpoint records the order of its head's outputs.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from megatron_biomed.data.metrics import Score
from megatron_biomed.data.metrics.entities import entity_scores
from megatron_biomed.data.tasks import TaggedSentence
from megatron_biomed.finetune.data import TaskSetupError
from megatron_biomed.finetune.encoding import TruncationCount
from megatron_biomed.finetune.head_tasks import HeadTask
from megatron_biomed.models.heads import TokenHead, flatten_choices, head_forward
from megatron_biomed.training.task import metric, move_batch

log = logging.getLogger("megatron_biomed")

IGNORE = -100  # label of positions without a tag (F.cross_entropy's ignore_index)
SUBTOKENS = ("first", "last")


def label_set(tags) -> list[str]:
    """The tag set of ``tags`` in a fixed order: O, then for each entity type (sorted) its B- and I- tags (B and I
    for untyped tags)."""
    types = sorted({t[2:] for t in tags if t != "O"})
    out = ["O"]
    for t in types:
        out += [f"B-{t}", f"I-{t}"] if t else ["B", "I"]
    return out


def word_pieces(tok, words) -> list[list[int]]:
    """Token ids of each word: the first as written, the others after a space (see the module docstring)."""
    pieces = [tok.encode(w if i == 0 else " " + w) for i, w in enumerate(words)]
    empty = [words[i] for i, p in enumerate(pieces) if not p]
    if empty:
        raise ValueError(f"words {empty[:3]} give no tokens")
    return pieces


def window_starts(n: int, seq: int, stride: int) -> list[int]:
    """Where the windows of ``seq`` tokens over ``n`` tokens start: 0, stride, 2 stride, ... until one reaches the
    end."""
    starts = [0]
    while starts[-1] + seq < n:
        starts.append(starts[-1] + stride)
    return starts


@dataclass(frozen=True)
class Layout:
    """One tagged sequence as tokens: ``ids``; ``positions[w]``, the token that carries word ``w``'s tag;
    ``starts``, the windows' first tokens; ``owner[w]``, the window word ``w`` is read from (the earliest that
    holds its position: the most left context)."""

    ids: tuple[int, ...]
    positions: tuple[int, ...]
    starts: tuple[int, ...]
    owner: tuple[int, ...]


def layout(pieces: list[list[int]], seq: int, stride: int, subtoken: str = "first") -> Layout:
    ids, positions = [], []
    for p in pieces:
        positions.append(len(ids) + (0 if subtoken == "first" else len(p) - 1))
        ids += p
    starts = window_starts(len(ids), seq, stride)
    owner = tuple(next(k for k, s in enumerate(starts) if s <= pos < s + seq) for pos in positions)
    return Layout(tuple(ids), tuple(positions), tuple(starts), owner)


def window_samples(lay: Layout, tag_ids: list[int], seq: int, pad_id: int) -> list[dict]:
    """One sample per window: ``tokens`` [1, S] (right-padded) and ``tag_ids`` [1, S] (a word's tag at its
    position, :data:`IGNORE` elsewhere)."""
    out = []
    for start in lay.starts:
        ids = list(lay.ids[start : start + seq])
        tags = [IGNORE] * seq
        for pos, t in zip(lay.positions, tag_ids, strict=True):
            if start <= pos < start + seq:
                tags[pos - start] = t
        out.append({
            "tokens": torch.tensor(ids + [pad_id] * (seq - len(ids)), dtype=torch.long)[None],
            "tag_ids": torch.tensor(tags, dtype=torch.long)[None],
        })  # fmt: skip
    return out


def word_logits(lay: Layout, window_logits: torch.Tensor) -> torch.Tensor:
    """[words, tags]: each word's logits at its position in the window it is read from; ``window_logits`` is
    [windows, S, tags]."""
    rows = [window_logits[k, pos - lay.starts[k]] for pos, k in zip(lay.positions, lay.owner, strict=True)]
    return torch.stack(rows) if rows else window_logits.new_zeros(0, window_logits.shape[-1])


def token_loss(tag_ids: torch.Tensor, logits: torch.Tensor):
    """Summed cross-entropy over the labelled tokens of the micro-batch, their number, and loss/accuracy metrics."""
    flat = logits.float().reshape(-1, logits.shape[-1])
    tags = tag_ids.reshape(-1)
    loss = F.cross_entropy(flat, tags, ignore_index=IGNORE, reduction="sum")
    labelled = tags != IGNORE
    n = labelled.sum()
    correct = ((flat.argmax(-1) == tags) & labelled).sum()
    return loss, n.to(torch.int), {"loss": metric(loss, n), "accuracy": metric(correct, n)}


class NERTask(HeadTask):
    """``Linear(hidden, num_tags)`` on every token (models/heads.py TokenHead); items are TaggedSentence records
    (task.format ``conll`` or ``pubtator``)."""

    name = "ner"
    task_type = "ner"
    record_type = TaggedSentence
    layout = "text"  # the input format's plain-text layout: words are laid out here (word_layout), not by a template
    score_metrics = ("entity_f1", "precision", "recall")
    head_class = TokenHead
    head_bias = True

    def check_options(self, cfg) -> None:
        t = cfg.task
        seq = t.max_seq_length or cfg.model.seq_length
        if t.label_subtoken not in SUBTOKENS:
            raise TaskSetupError(f"task.label_subtoken={t.label_subtoken!r} is not one of {', '.join(SUBTOKENS)}")
        if not 0 <= t.window_stride <= seq:
            raise TaskSetupError(f"task.window_stride={t.window_stride} must be 1..{seq} (the sequence length), "
                                 "or 0 for half of it")  # fmt: skip

    @classmethod
    def plan_options(cls, cfg) -> dict:
        t = cfg.task
        return super().plan_options(cfg) | {
            "reader_options": dict(t.reader_options), "labels": list(t.labels), "window_stride": t.window_stride,
            "label_subtoken": t.label_subtoken,
        }  # fmt: skip

    @property
    def stride(self) -> int:
        return self.cfg.task.window_stride or max(1, self.seq // 2)

    def _width(self, items) -> int:
        bad = [it for it in items if not isinstance(it, TaggedSentence)]
        if bad:
            raise TaskSetupError(f"task ner reads tagged words (task.format conll or pubtator), not "
                                 f"{type(bad[0]).__name__} records of task.format={self.cfg.task.format}")  # fmt: skip
        found = label_set(t for it in items for t in it.tags)
        labels = list(self.cfg.task.labels) or found
        missing = sorted(set(found) - set(labels))
        if missing:  # tools/evaluate.py --head: a test file's tags the head was not trained on are scored, never hit
            log.warning("%s: tags %s are not in task.labels %s: their words are not trained on",
                        self.cfg.task.train_file, missing, labels)  # fmt: skip
        self.cfg.task.labels = list(labels)  # recorded in the checkpoint's run_config.yaml
        self.label_names = tuple(labels)
        self.tag_index = {t: i for i, t in enumerate(labels)}
        return len(labels)

    def head_outputs(self) -> int:
        return self.width

    def word_layout(self, item: TaggedSentence) -> Layout:
        return layout(word_pieces(self.tok, item.words), self.seq, self.stride, self.cfg.task.label_subtoken)

    def encode_item(self, item: TaggedSentence, count: TruncationCount) -> list[dict]:
        """The windows of one item (samples for training and scoring)."""
        lay = self.word_layout(item)
        tag_ids = [self.tag_index.get(t, IGNORE) for t in item.tags]
        unknown = sum(i == IGNORE for i in tag_ids)
        if unknown:
            count.reasons["words with a tag not in task.labels (not trained, still scored)"] = (
                count.reasons.get("words with a tag not in task.labels (not trained, still scored)", 0) + unknown
            )
        count.sequences += len(lay.starts)
        if len(lay.starts) > 1:
            count.reasons["items split into windows"] = count.reasons.get("items split into windows", 0) + 1
        return window_samples(lay, tag_ids, self.seq, self.pad_id)

    def scoring_samples(self, items, count) -> list[dict]:
        return [s for it in items for s in self.encode_item(it, count)]

    def _encode(self, items, what):
        count = TruncationCount()
        out = self.scoring_samples(items, count)
        log.info(count.summary(f"{self.name} {what}"))
        return out

    @property
    def scoring_width(self) -> int:
        return self.seq * self.width

    def item_outputs(self, items, table) -> list[torch.Tensor]:
        """Each item's [words, tags] logits, from the [windows, S * tags] table of every item's windows in order."""
        out, row = [], 0
        for it in items:
            lay = self.word_layout(it)
            windows = table[row : row + len(lay.starts)].view(len(lay.starts), self.seq, self.width)
            out.append(word_logits(lay, windows))
            row += len(lay.starts)
        if row != len(table):
            raise RuntimeError(f"ner scoring: {len(table)} windows scored, {row} expected")
        return out

    def predicted_tags(self, outputs) -> list[list[str]]:
        return [[self.label_names[i] for i in o.argmax(-1).tolist()] for o in outputs]

    def score(self, items, outputs) -> list[Score]:
        """Entity-level F1 (first), precision and recall of the predicted tags against the items' tags (seqeval's
        default mode, data/metrics/entities.py)."""
        return self.main_first(entity_scores(self.predicted_tags(outputs), [list(it.tags) for it in items]))

    def sample_rows(self, items, outputs) -> list[dict]:
        return [{"uid": it.uid, "words": list(it.words), "gold": list(it.tags), "pred": p}
                for it, p in zip(items, self.predicted_tags(outputs), strict=True)]  # fmt: skip

    def forward_step(self, data_iterator, model):
        batch = move_batch(next(data_iterator), model)
        logits = head_forward(model, flatten_choices(batch, self.seq))
        return logits, functools.partial(token_loss, batch["tag_ids"])

    def describe(self) -> str:
        return (f"named-entity recognition over {list(self.label_names)} ({self.cfg.task.label_subtoken} sub-token, "
                f"windows every {self.stride} tokens), {len(self.train_items)} training items")  # fmt: skip
