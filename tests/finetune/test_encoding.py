"""Task items to tensors: templates, left truncation (counted), packing, the document attention mask."""

from __future__ import annotations

import pytest
import torch

from megatron_biomed.data.tasks import ClassificationItem, MultipleChoiceItem, SFTExample
from megatron_biomed.finetune.encoding import (
    TruncationCount,
    document_attention_mask,
    encode_choices,
    encode_classification,
    head_encoding,
    pack_documents,
    sft_document,
)
from megatron_biomed.finetune.formats import input_format
from megatron_biomed.finetune.prompts import PromptError, render_chat, render_choices


class CharTokenizer:
    """One token per character (ids = code points mod 250 + 1), so lengths are easy to reason about."""

    def encode(self, text):
        return [ord(c) % 250 + 1 for c in text]


def _plain(seq: int):
    """The ``plain`` input format with the biomedlm template, cut from the left, padded with id 0."""
    return head_encoding(CharTokenizer(), input_format("plain"), "biomedlm", seq, "left", 0)


def test_choices_keep_the_end_when_truncated_and_are_counted():
    item = MultipleChoiceItem(question="q" * 30, options=("red", "blue"), answer=1)
    count = TruncationCount()
    enc = encode_choices(CharTokenizer(), item, _plain(16), count)
    assert enc["tokens"].shape == (2, 16) and int(enc["label"]) == 1
    assert count.sequences == 2 and count.truncated == 2
    tok = CharTokenizer()
    assert enc["tokens"][1].tolist() == tok.encode(("q" * 30 + " blue")[-16:])  # the option survives
    assert enc["last_index"].tolist() == [15, 15]
    short = encode_choices(tok, MultipleChoiceItem(question="q", options=("a", "bb"), answer=0), _plain(16), count)
    assert short["last_index"].tolist() == [2, 3] and short["tokens"][0, 3:].eq(0).all()


def test_classification_puts_the_question_last():
    item = ClassificationItem(question="Q?", context="c" * 40, label=2, label_names=("yes", "no", "maybe"))
    count = TruncationCount()
    enc = encode_classification(CharTokenizer(), item, _plain(10), count)
    assert enc["tokens"][0, -2:].tolist() == CharTokenizer().encode("Q?") and count.truncated == 1


def test_templates_inline_and_unknown():
    item = MultipleChoiceItem(question="Which?", options=("a", "b"), answer=0, context="ctx")
    assert render_choices(item, "Q: {question} A: {option}") == ["Q: Which? A: a", "Q: Which? A: b"]
    assert render_choices(item)[0] == "ctx Which? a"
    with pytest.raises(PromptError, match="known"):
        render_choices(item, "nope")
    with pytest.raises(PromptError, match="unknown field"):
        render_choices(item, "{answer}")


def test_chat_response_segments():
    msgs = (("system", "be brief"), ("user", "hi"), ("assistant", "hello"))
    for template in ("plain", "llama2", "chatml"):
        segs = render_chat(msgs, template)
        assert [t for t, r in segs if r] and "hello" in "".join(t for t, r in segs if r)
        assert "hi" in "".join(t for t, r in segs if not r)


def test_packing_and_document_mask():
    tok = CharTokenizer()
    docs = [sft_document(tok, SFTExample(messages=(("user", "ab"), ("assistant", "cd"))), "plain", 999)
            for _ in range(3)]  # fmt: skip
    n = len(docs[0][0]) - 1  # positions per document
    count = TruncationCount()
    packed = pack_documents(docs, 2 * n + 1, 0, True, count)
    assert len(packed) == 2 and packed[0]["doc_ids"].tolist() == [0] * n + [1] * n + [-1]
    assert packed[0]["position_ids"][:n].tolist() == list(range(n)) == packed[0]["position_ids"][n : 2 * n].tolist()
    # labels: the response tokens and the closing end-of-document are trained on, the prompt is not
    m = packed[0]["loss_mask"][:n]
    assert m.sum() == len(tok.encode("cd\n")) + 1
    mask = document_attention_mask(packed[0]["doc_ids"][None])[0, 0]
    assert mask[n, n - 1] and not mask[n, n] and mask[0, 1] and not mask[1, 0]
    assert not mask.all(-1).any()  # no fully masked row
    alone = pack_documents(docs, 2 * n + 1, 0, False, TruncationCount())
    assert len(alone) == 3
    # A document whose response would be cut away entirely is dropped and counted.
    count = TruncationCount()
    assert pack_documents(docs[:1], 3, 0, True, count) == [] and count.dropped == 1


def test_document_mask_matches_causal_for_one_document():
    doc = torch.zeros(1, 6, dtype=torch.long)
    assert torch.equal(document_attention_mask(doc)[0, 0], torch.ones(6, 6, dtype=torch.bool).triu(1))
