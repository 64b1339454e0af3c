"""Task items to fixed-length token tensors (constant shapes, as pipeline parallelism needs).

Conventions shared by every task:

* sequences are right-padded with ``pad_id`` to ``seq_length``; ``last_index`` is the last real token;
* ``labels[i]`` is the token after position ``i``; ``loss_mask[i]`` is 1 where that label is trained on;
* a prompt longer than ``seq_length`` is truncated from the left (the end, with the option or the question,
  is kept) and counted in :class:`TruncationCount`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from megatron_biomed.data.tasks import ClassificationItem, MultipleChoiceItem, PreferenceExample, SFTExample
from megatron_biomed.finetune.prompts import CHAT_CLOSES_WITH_EOD, render_chat, render_choices, render_classification


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


def _fit_left(ids: list[int], seq_length: int, count: TruncationCount) -> list[int]:
    count.sequences += 1
    if len(ids) > seq_length:
        count.truncated += 1
        return ids[-seq_length:]
    return ids


def _pad(ids: list[int], seq_length: int, pad_id: int) -> torch.Tensor:
    return torch.tensor(ids + [pad_id] * (seq_length - len(ids)), dtype=torch.long)


def encode_choices(tok, item: MultipleChoiceItem, template: str, seq_length: int, pad_id: int,
                   count: TruncationCount) -> dict:  # fmt: skip
    """tokens [C, S], last_index [C], label [] for one multiple-choice item."""
    rows, last = [], []
    for text in render_choices(item, template):
        ids = _fit_left(tok.encode(text), seq_length, count)
        rows.append(_pad(ids, seq_length, pad_id))
        last.append(len(ids) - 1)
    return {"tokens": torch.stack(rows), "last_index": torch.tensor(last), "label": torch.tensor(item.answer)}


def encode_classification(tok, item: ClassificationItem, template: str, seq_length: int, pad_id: int,
                          count: TruncationCount) -> dict:  # fmt: skip
    """tokens [1, S], last_index [1], label [] for one classification item."""
    ids = _fit_left(tok.encode(render_classification(item, template)), seq_length, count)
    return {
        "tokens": _pad(ids, seq_length, pad_id)[None],
        "last_index": torch.tensor([len(ids) - 1]),
        "label": torch.tensor(item.label),
    }


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
