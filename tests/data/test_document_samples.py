"""data.sample_layout=document (LeoYML/BioMamba's continued pretraining): one document per sample, truncated to
the sequence length (+1 for the shifted labels), padded, loss mask 0 on the padding. Checked token by token
against the documents written, over a two-corpus blend."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from megatron_biomed.config.experiment import ConfigError
from megatron_biomed.config.loading import load_config
from megatron_biomed.data.errors import DataError
from megatron_biomed.data.gpt_dataset import TokenInfo, build_gpt_datasets
from megatron_biomed.data.indexed import IndexedDatasetWriter

VOCAB, EOD, SEQ = 300, 0, 16


def _write(prefix: Path, n_docs: int, seed: int, offset: int) -> list[list[int]]:
    """Documents of 3..30 ids (some longer than SEQ + 1) ending in EOD; ids start at ``offset`` so that each
    corpus's tokens are told apart."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(offset, offset + 100, size=int(rng.integers(2, 30))).tolist() + [EOD] for _ in range(n_docs)]
    with IndexedDatasetWriter(str(prefix), np.uint16) as w:
        for doc in docs:
            w.add_document(doc)
    return docs


def _expected(doc: list[int]) -> dict:
    n = min(len(doc), SEQ + 1)
    text = doc[:n] + [None] * (SEQ + 1 - n)
    return {
        "tokens": [t if t is not None else 0 for t in text[:-1]],
        "labels": [t if t is not None else 0 for t in text[1:]],
        "loss_mask": [1.0 if t is not None else 0.0 for t in text[1:]],
    }


def test_every_sample_is_one_whole_document_padded_and_masked(tmp_path):
    a = _write(tmp_path / "a", 23, seed=1, offset=1)
    b = _write(tmp_path / "b", 17, seed=2, offset=101)
    n_samples = 120  # several epochs of both corpora
    train, _, _ = build_gpt_datasets(
        [0.5, str(tmp_path / "a"), 0.5, str(tmp_path / "b")], seq_length=SEQ, seed=7, num_samples=(n_samples, 0, 0),
        tokens=TokenInfo(vocab_size=VOCAB, eod=EOD), split="100,0,0", sample_layout="document",
    )  # fmt: skip
    docs = {tuple(d): ("a", i) for i, d in enumerate(a)} | {tuple(d): ("b", i) for i, d in enumerate(b)}
    seen = Counter()
    for i in range(n_samples):
        sample = train[i]
        tokens = sample["tokens"].tolist()
        # Which document: the one whose expected sample this is, token for token (exactly one matches).
        matches = [key for doc, key in docs.items() if _expected(list(doc))["tokens"] == tokens]
        assert len(matches) == 1, f"sample {i} is not exactly one document: {tokens}"
        doc = [d for d, key in docs.items() if key == matches[0]][0]
        want = _expected(list(doc))
        assert sample["labels"].tolist() == want["labels"]
        assert sample["loss_mask"].tolist() == want["loss_mask"]
        assert sample["position_ids"].tolist() == list(range(SEQ))
        seen[matches[0]] += 1
    # Each corpus's documents are visited in epochs: counts differ by at most one within a corpus.
    for corpus, docs_of in (("a", a), ("b", b)):
        counts = [seen[(corpus, i)] for i in range(len(docs_of))]
        assert min(counts) >= 1 and max(counts) - min(counts) <= 1, (corpus, counts)
    # Some documents were truncated, some padded: both cases were exercised.
    lengths = [len(d) for d in a + b]
    assert min(lengths) < SEQ + 1 < max(lengths)


def test_packed_is_still_the_default_and_unknown_layout_is_refused(tmp_path):
    _write(tmp_path / "a", 10, seed=1, offset=1)
    assert load_config("tiny-mamba").data.sample_layout == "packed"
    with pytest.raises(ConfigError, match="data.sample_layout"):
        load_config("tiny-mamba", overrides=["data.sample_layout=documents"])
    with pytest.raises(DataError, match="data.sample_layout"):
        build_gpt_datasets(
            [str(tmp_path / "a")], seq_length=SEQ, seed=1, num_samples=(4, 0, 0),
            tokens=TokenInfo(vocab_size=VOCAB, eod=EOD), split="100,0,0", sample_layout="docs",
        )  # fmt: skip


def test_pretraining_task_reads_the_layout(tmp_path):
    """The pretraining task builds its training and per-corpus validation sets with data.sample_layout."""
    from megatron_biomed.data.gpt_dataset import DocumentPerSampleDataset
    from megatron_biomed.training.lm_task import LanguageModelTask

    _write(tmp_path / "a", 12, seed=3, offset=1)
    prefix = str(tmp_path / "a")
    cfg = load_config("tiny-mamba", overrides=[f"data.blend={prefix}", "data.sample_layout=document",
                                               "data.split=90,10,0", f"train.eval_corpora=a={prefix}"])  # fmt: skip
    task = LanguageModelTask(cfg, TokenInfo(vocab_size=VOCAB, eod=EOD))
    train, valid = task.build_datasets((8, 4))
    assert isinstance(train, DocumentPerSampleDataset) and isinstance(valid, DocumentPerSampleDataset)
    assert isinstance(task.extra_eval_datasets()["a"], DocumentPerSampleDataset)
