"""tools/extend_vocab.py: frequent fragmented domain words become single tokens, nothing else moves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.tokenizer import (
    TokenizerTrainConfig,
    load_tokenizer,
    train_bpe_tokenizer,
)
from megatron_biomed.tokenizer.extend import (
    ExtendVocabConfig,
    init_new_rows_from_pieces,
    load_new_token_pieces,
    mine_fragmented_words,
)

ROOT = Path(__file__).resolve().parents[2]
PUBMED = ROOT.parent / "shared" / "data" / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"
GENERAL = ["The weather was mild and the market opened early on Monday morning.",
           "She walked to the station, bought a ticket and read the newspaper."] * 50


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    # a "general" base tokenizer that has never seen the domain words
    d = tmp_path_factory.mktemp("base")
    train_bpe_tokenizer(GENERAL, TokenizerTrainConfig(vocab_size=400, min_frequency=1), d)
    return d


@pytest.fixture(scope="module")
def domain_jsonl(tmp_path_factory):
    p = tmp_path_factory.mktemp("dom") / "d.jsonl"
    p.write_text("".join(json.dumps({"text": t}) + "\n" for t in synthetic_abstracts(300, seed=13)))
    return p


def test_mined_words_are_frequent_and_fragmented(base_dir, domain_jsonl):
    base = load_tokenizer(base_dir)
    texts = [json.loads(line)["text"] for line in domain_jsonl.open()]
    words = mine_fragmented_words(base.hf_tokenizer, texts, ExtendVocabConfig(top_n=25))
    assert len(words) == 25
    assert [w.count for w in words] == sorted((w.count for w in words), reverse=True)
    for w in words:
        assert len(w.pieces) >= 3 and w.pieces == base.encode(w.text)
        assert sum(t.count(w.text) for t in texts) >= w.count  # counted whole words only
    # independently: GPT-2's letter pre-tokens are ` ?[A-Za-z]+` on ASCII text
    counts = Counter(m for t in texts for m in re.findall(r" ?[A-Za-z]+", t))
    expected = sorted((c for w, c in counts.items()
                       if len(w.strip()) >= 4 and len(base.encode(w)) >= 3), reverse=True)[:25]
    assert [w.count for w in words] == expected


def test_cli_extends_and_writes_piece_mapping(tmp_path, base_dir, domain_jsonl):
    out = tmp_path / "ext"
    r = subprocess.run([sys.executable, "tools/extend_vocab.py", "--base-tokenizer", str(base_dir),
                        "--input", str(domain_jsonl), "--top-n", "40", "--output-dir", str(out)],
                       check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    base, ext = load_tokenizer(base_dir), load_tokenizer(out)
    pieces = load_new_token_pieces(out)
    assert ext.vocab_size == base.vocab_size + 40 == base.vocab_size + len(pieces)
    assert sorted(pieces) == list(range(base.vocab_size, base.vocab_size + 40))
    summary = json.loads((out / "extend_vocab_summary.json").read_text())
    for item in summary["words"]:
        new_id = item["id"]
        # mid-sentence the word is now one token, and its pieces are what the base tokenizer produced
        assert ext.encode("x." + item["text"])[-1:] == [new_id]
        assert pieces[new_id] == base.encode(item["text"]) and len(pieces[new_id]) >= 3
    # text is preserved, and words that were not added tokenize exactly as before
    text = " ".join(synthetic_abstracts(20, seed=99)) + " " + GENERAL[0]
    assert ext.decode(ext.encode(text)) == text
    assert ext.encode(GENERAL[0]) == base.encode(GENERAL[0])
    assert len(ext.encode(text)) < len(base.encode(text))
    emb = np.random.default_rng(0).normal(size=(ext.vocab_size, 8))
    base_rows = emb[:base.vocab_size].copy()
    init_new_rows_from_pieces(emb, pieces)
    assert np.array_equal(emb[:base.vocab_size], base_rows)
    for new_id, ids in pieces.items():
        assert np.allclose(emb[new_id], base_rows[ids].mean(0))

    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(out)).encode(text, add_special_tokens=False) == ext.encode(text)


@pytest.mark.skipif(not PUBMED.is_file(), reason=f"shared PubMed abstracts not found at {PUBMED}")
def test_on_pubmed_abstracts_reduces_fragmentation(tmp_path, base_dir):
    rows = [json.loads(line) for line in PUBMED.open()][:1200]
    src = tmp_path / "pm.jsonl"
    src.write_text("".join(json.dumps({"text": r["abstract"]}) + "\n" for r in rows[:1000] if r["abstract"]))
    out = tmp_path / "ext"
    r = subprocess.run([sys.executable, "tools/extend_vocab.py", "--base-tokenizer", str(base_dir),
                        "--input", str(src), "--top-n", "200", "--output-dir", str(out)],
                       check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    held_out = " ".join(r["abstract"] for r in rows[1000:] if r["abstract"])
    base, ext = load_tokenizer(base_dir), load_tokenizer(out)
    assert len(ext.encode(held_out)) < 0.95 * len(base.encode(held_out))
    assert ext.decode(ext.encode(held_out)) == held_out
