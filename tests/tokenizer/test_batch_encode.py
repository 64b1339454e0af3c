"""gigatoken and Hugging Face tokenizers give identical ids (the preprocessing fast path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.tokenizer import (
    TokenizerTrainConfig,
    load_tokenizer,
    train_bpe_tokenizer,
)
from megatron_biomed.tokenizer.batch_encode import (
    gigatoken_available,
    make_batch_encoder,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
PUBMED = DATA / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"
C4 = DATA / "c4" / "c4_en_validation_sample_500.jsonl"

needs_gigatoken = pytest.mark.skipif(not gigatoken_available(),
                                     reason="gigatoken not installed (pip install gigatoken); HF path only")
needs_data = pytest.mark.skipif(not (PUBMED.is_file() and C4.is_file()),
                                reason=f"shared data not found under {DATA}")

EDGE = ["", " ", "a", "\n\n\n", "  leading and trailing  ", "tab\tsep\r\nCRLF", "<|endoftext|>",
        "x<|endoftext|>y <|endoftext|> z", "\u00b5mol \u03b2-blocker \u2265 5 \u00d7 10\u207b\u00b3",
        "\U0001F600\U0001F9EC emoji", "\u4e2d\u6587 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
        "numbers 1234567890 3.14159 1,000,000", "'s 't 're 've 'm 'll 'd", "\u00a0nbsp\u2009thin",
        "a" * 5000, "word " * 2000]


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    texts = synthetic_abstracts(300, seed=2)
    if PUBMED.is_file():
        texts += [json.loads(line)["abstract"] or "" for line in PUBMED.open()][:1500]
    train_bpe_tokenizer(texts, TokenizerTrainConfig(vocab_size=3000), d)
    return d


def _corpus() -> list[str]:
    texts = EDGE + synthetic_abstracts(200, seed=8)
    if PUBMED.is_file():
        texts += [json.loads(line)["abstract"] or "" for line in PUBMED.open()][1500:3500]
    if C4.is_file():
        texts += [json.loads(line)["text"] for line in C4.open()]
    return texts


def test_hf_encoder_matches_tokenizer(tokdir):
    texts = _corpus()
    ids, lengths = make_batch_encoder(tokdir, "hf").encode_batch(texts)
    tok = load_tokenizer(tokdir)
    assert lengths.sum() == ids.size and len(lengths) == len(texts)
    assert ids.dtype == np.uint32
    ends = np.cumsum(lengths)
    for i in (0, 6, 8, len(texts) - 1):
        assert ids[ends[i] - lengths[i]:ends[i]].tolist() == tok.encode(texts[i])


@needs_gigatoken
@pytest.mark.parametrize("parallel", [False, True])
def test_gigatoken_identical_to_hf(tokdir, parallel):
    texts = _corpus()
    ref = make_batch_encoder(tokdir, "hf").encode_batch(texts)
    got = make_batch_encoder(tokdir, "gigatoken", parallel=parallel).encode_batch(texts)
    assert np.array_equal(ref[1], got[1])
    assert np.array_equal(ref[0], got[0])


@needs_gigatoken
@needs_data
def test_real_data_both_backends(tokdir):
    # the shared corpora specifically (not only the synthetic text): skipped without them
    texts = [json.loads(line)["text"] for line in C4.open()]
    ref = make_batch_encoder(tokdir, "hf").encode_batch(texts)
    got = make_batch_encoder(tokdir, "gigatoken").encode_batch(texts)
    assert ref[0].size > 100_000 and np.array_equal(ref[0], got[0])


def test_auto_prefers_gigatoken_when_it_agrees(tokdir):
    enc = make_batch_encoder(tokdir, "auto")
    assert enc.name == ("gigatoken" if gigatoken_available() else "hf")
    with pytest.raises(ValueError, match="--tokenizer-backend 'fast'"):
        make_batch_encoder(tokdir, "fast")
