"""DocumentEncoder lays ids out as Megatron-LM's preprocess_data does, edge cases included."""

from __future__ import annotations

import numpy as np
import pytest

from megatron_biomed.data.indexed.encode import DocumentEncoder
from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.tokenizer import (
    TokenizerTrainConfig,
    load_tokenizer,
    train_bpe_tokenizer,
)


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_bpe_tokenizer(synthetic_abstracts(100, seed=1), TokenizerTrainConfig(vocab_size=400), d)
    return d


def _megatron_lm(tok, docs, split, append_eod):
    """Megatron-LM's Encoder.encode, per document: (ids, sentence lengths)."""
    out = []
    for text in docs:
        ids, lens = [], []
        for s in split(text):
            s_ids = tok.encode(s)
            if s_ids:
                ids += s_ids
                lens.append(len(s_ids))
        if ids and append_eod:
            ids.append(tok.eod)
            lens[-1] += 1
        out.append((ids, lens))
    return out


@pytest.mark.parametrize("append_eod", [False, True])
def test_empty_sentences_and_empty_documents(tokdir, append_eod):
    enc = DocumentEncoder(str(tokdir), backend="hf")
    enc.splitter = lambda t: t.split("|")  # a stand-in splitter that yields empty sentences
    docs = ["||", "Rats were used.|Mice were not.", "a||b|", "|only one", "||"]
    ids, lens, per_doc = enc.encode_documents(docs, append_eod)
    want = _megatron_lm(load_tokenizer(tokdir), docs, enc.splitter, append_eod)
    assert per_doc.tolist() == [len(w[1]) for w in want]
    assert lens.tolist() == [n for w in want for n in w[1]]
    assert ids.tolist() == [i for w in want for i in w[0]]


def test_document_mode(tokdir):
    enc = DocumentEncoder(str(tokdir), backend="hf")
    docs = ["First doc.", "Second, longer document here."]
    ids, lens, per_doc = enc.encode_documents(docs, append_eod=True)
    want = _megatron_lm(load_tokenizer(tokdir), docs, lambda t: [t], True)
    assert per_doc is None and lens.tolist() == [len(w[0]) for w in want]
    assert np.array_equal(ids, [i for w in want for i in w[0]])
