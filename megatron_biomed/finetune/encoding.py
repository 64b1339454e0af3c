"""Task items to fixed-length token tensors (constant shapes, as pipeline parallelism needs).

Conventions shared by every task:

* sequences are right-padded with ``pad_id`` to ``seq_length``;
* ``labels[i]`` is the token after position ``i``; ``loss_mask[i]`` is 1 where that label is trained on;
* scoring-head items are laid out by their input format (finetune/formats.py); a sequence longer than
  ``seq_length`` is truncated (Hugging Face's longest-first rule, from the format's side or ``task.truncation``;
  the ``plain`` format cuts from the left, keeping the option or the question) and counted in
  :class:`TruncationCount`; ``last_index`` is then the position the head reads (the format's pooled token);
* SFT / DPO documents longer than ``seq_length`` lose their end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from megatron_biomed.data.tasks import (
    ClassificationItem,
    MultiLabelItem,
    MultipleChoiceItem,
    PreferenceExample,
    SentencePairItem,
    SFTExample,
)
from megatron_biomed.finetune.formats import InputFormat
from megatron_biomed.finetune.prompts import CHAT_CLOSES_WITH_EOD, render_chat


@dataclass
class TruncationCount:
    sequences: int = 0
    truncated: int = 0
    dropped: int = 0
    reasons: dict = field(default_factory=dict)

    def summary(self, what: str) -> str:
        return (
            f"{what}: {self.sequences} sequences, {self.truncated} truncated to fit, {self.dropped} dropped"
            + (f" ({self.reasons})" if self.reasons else "")
        )


def longest_first(lengths: list[int], budget: int) -> list[int]:
    """How many tokens each part keeps under Hugging Face's ``longest_first`` truncation to ``budget`` tokens
    (tokenizers/src/utils/truncation.rs, the rule BioMedLM's fine-tuning scripts ran under): one part keeps
    ``min(n, budget)``; of a pair, the shorter is kept whole and the longer cut to what is left, unless both
    must be cut, then they share the budget (the second part gets the odd token)."""
    if sum(lengths) <= budget:
        return list(lengths)
    if len(lengths) == 1:
        return [budget]
    if len(lengths) != 2:
        raise ValueError(f"longest_first truncation takes one or two parts, not {len(lengths)}")
    n1, n2 = lengths
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    return [n2, n1] if swap else [n1, n2]


@dataclass(frozen=True)
class HeadEncoding:
    """Everything that turns a scoring-head item into tokens: the input format (finetune/formats.py), the
    prompt template (``plain`` format only), the sequence length, the truncation side, the padding id, the
    added tokens' ids and the id whose last occurrence the head reads (None: the last real token)."""

    fmt: InputFormat
    template: str
    seq_length: int
    side: str
    pad_id: int
    special: dict
    pool_id: int | None


def head_encoding(tok, fmt: InputFormat, template: str, seq_length: int, side: str, eod: int) -> HeadEncoding:
    special = fmt.special_ids(tok)
    pad = special[fmt.pad_token] if fmt.pad_token else eod
    pool = special[fmt.pool_token] if fmt.pool_token else None
    return HeadEncoding(fmt, template, seq_length, side, pad, special, pool)


def encode_parts(tok, parts, enc: HeadEncoding, count: TruncationCount) -> list[int]:
    """Token ids of ``parts`` (formats.py): text pieces tokenized, markers by id, the text tokens cut by
    :func:`longest_first` from ``enc.side`` to leave room for every marker within ``enc.seq_length``."""
    count.sequences += 1
    tagged = []  # per part: (id, is a marker)
    for part in parts:
        row: list[tuple[int, bool]] = []
        for piece in part:
            if isinstance(piece, str):
                row += [(i, False) for i in tok.encode(piece)]
            else:
                row.append((enc.special[piece.token], True))
        tagged.append(row)
    markers = sum(m for part in tagged for _, m in part)
    if markers > enc.seq_length:
        raise ValueError(f"{markers} added tokens do not fit in {enc.seq_length} positions")
    texts = [sum(not m for _, m in part) for part in tagged]
    keep = longest_first(texts, enc.seq_length - markers)
    if keep != texts:
        count.truncated += 1
    ids: list[int] = []
    for part, n, k in zip(tagged, texts, keep, strict=True):
        cut = n - k  # text tokens to drop, from the right (keep the first k) or the left (keep the last k)
        seen = 0
        for i, is_marker in part:
            if not is_marker:
                seen += 1
                if (enc.side == "right" and seen > k) or (enc.side == "left" and seen <= cut):
                    continue
            ids.append(i)
    return ids


def read_position(ids: list[int], pool_id: int | None) -> int:
    """The position the head reads: the last occurrence of ``pool_id``, or the last token."""
    if pool_id is None:
        return len(ids) - 1
    return len(ids) - 1 - ids[::-1].index(pool_id)


def _pad(ids: list[int], seq_length: int, pad_id: int) -> torch.Tensor:
    return torch.tensor(ids + [pad_id] * (seq_length - len(ids)), dtype=torch.long)


def encode_choices(tok, item: MultipleChoiceItem, enc: HeadEncoding, count: TruncationCount) -> dict:
    """tokens [C, S], last_index [C] (the position the head reads), label [] for one multiple-choice item."""
    rows, last = [], []
    for parts in enc.fmt.choices(item, enc.template):
        ids = encode_parts(tok, parts, enc, count)
        rows.append(_pad(ids, enc.seq_length, enc.pad_id))
        last.append(read_position(ids, enc.pool_id))
    return {"tokens": torch.stack(rows), "last_index": torch.tensor(last), "label": torch.tensor(item.answer)}


def encode_classification(tok, item: ClassificationItem, enc: HeadEncoding, count: TruncationCount) -> dict:
    """tokens [1, S], last_index [1] (the position the head reads), label [] for one classification item."""
    ids = encode_parts(tok, enc.fmt.classification(item, enc.template), enc, count)
    return {
        "tokens": _pad(ids, enc.seq_length, enc.pad_id)[None],
        "last_index": torch.tensor([read_position(ids, enc.pool_id)]),
        "label": torch.tensor(item.label),
    }


def _one_sequence(tok, parts, enc: HeadEncoding, count: TruncationCount, label: torch.Tensor) -> dict:
    ids = encode_parts(tok, parts, enc, count)
    return {
        "tokens": _pad(ids, enc.seq_length, enc.pad_id)[None],
        "last_index": torch.tensor([read_position(ids, enc.pool_id)]),
        "label": label,
    }


def encode_pair(tok, item: SentencePairItem, enc: HeadEncoding, count: TruncationCount) -> dict:
    """tokens [1, S], last_index [1], label [] (the gold similarity, float32) for one sentence pair."""
    return _one_sequence(tok, enc.fmt.pair(item, enc.template), enc, count, torch.tensor(item.score))


def encode_text(tok, item: MultiLabelItem, enc: HeadEncoding, count: TruncationCount) -> dict:
    """tokens [1, S], last_index [1], label [num_labels] (0/1 per label, float32) for one multi-label text."""
    label = torch.tensor(item.indicator(), dtype=torch.float32)
    return _one_sequence(tok, enc.fmt.text(item, enc.template), enc, count, label)


# ---- SFT / DPO: token ids with a response mask -----------------------------------------------------------


def encode_segments(tok, segments: list[tuple[str, bool]], eod: int, close: bool = True) -> tuple[list[int], list[int]]:
    """Token ids of the segments followed (``close``) by ``eod``, and a mask: 1 on response tokens (and the
    closing eod, so the model learns to stop), 0 on prompt tokens."""
    ids: list[int] = []
    mask: list[int] = []
    for text, is_response in segments:
        piece = tok.encode(text)
        ids += piece
        mask += [int(is_response)] * len(piece)
    if close:
        ids.append(eod)
        mask.append(1)
    return ids, mask


def sft_document(tok, ex: SFTExample, chat_template: str, eod: int) -> tuple[list[int], list[int]]:
    segments = render_chat(ex.messages, chat_template)
    return encode_segments(tok, segments, eod, CHAT_CLOSES_WITH_EOD[chat_template])


def preference_documents(tok, ex: PreferenceExample, chat_template: str, eod: int):
    """(chosen ids, chosen mask), (rejected ids, rejected mask): the same prompt, two responses."""
    prompt = (("user", ex.prompt),)
    chosen = encode_segments(tok, render_chat(prompt + (("assistant", ex.chosen),), chat_template), eod)
    rejected = encode_segments(tok, render_chat(prompt + (("assistant", ex.rejected),), chat_template), eod)
    return chosen, rejected


def _doc_triplets(ids: list[int], mask: list[int], seq_length: int, count: TruncationCount):
    """(inputs, labels, loss mask) of one document, at most ``seq_length`` positions (the end is cut)."""
    count.sequences += 1
    if len(ids) - 1 > seq_length:
        count.truncated += 1
        ids, mask = ids[: seq_length + 1], mask[: seq_length + 1]
    return ids[:-1], ids[1:], mask[1:]


def pack_documents(docs: list[tuple[list[int], list[int]]], seq_length: int, pad_id: int, pack: bool,
                   count: TruncationCount) -> list[dict]:  # fmt: skip
    """Sequences of ``seq_length`` positions holding one document each (``pack=False``) or as many whole
    documents as fit, in order (greedy first fit). Each sample: tokens, labels, loss_mask, position_ids (reset
    at every document) and ``doc_ids`` [S] (document number within the sequence, -1 on padding), from which
    the block-diagonal causal attention mask is built."""
    samples: list[dict] = []
    cur: list[tuple[list[int], list[int], list[int]]] = []
    used = 0

    def flush():
        nonlocal cur, used
        if not cur:
            return
        tokens, labels, loss, pos, doc = [], [], [], [], []
        for d, (x, y, m) in enumerate(cur):
            tokens += x
            labels += y
            loss += m
            pos += list(range(len(x)))
            doc += [d] * len(x)
        pad = seq_length - len(tokens)
        samples.append({
            "tokens": torch.tensor(tokens + [pad_id] * pad),
            "labels": torch.tensor(labels + [pad_id] * pad),
            "loss_mask": torch.tensor(loss + [0] * pad, dtype=torch.float),
            "position_ids": torch.tensor(pos + list(range(pad))),
            "doc_ids": torch.tensor(doc + [-1] * pad),
        })  # fmt: skip
        cur, used = [], 0

    for ids, mask in docs:
        x, y, m = _doc_triplets(ids, mask, seq_length, count)
        if not any(m):
            count.dropped += 1
            count.reasons["no response token left after truncation"] = (
                count.reasons.get("no response token left after truncation", 0) + 1
            )
            continue
        if not pack or used + len(x) > seq_length:
            flush()
        cur.append((x, y, m))
        used += len(x)
    flush()
    return samples


def document_attention_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """[b, 1, S, S] bool, True = masked: causal within a document, nothing across documents (padding
    positions attend to themselves only, so no row is fully masked)."""
    s = doc_ids.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=doc_ids.device).tril()
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    pad = doc_ids < 0
    eye = torch.eye(s, dtype=torch.bool, device=doc_ids.device)
    allowed = causal & same & ~(pad[:, :, None] & ~eye)
    return (~allowed)[:, None]
