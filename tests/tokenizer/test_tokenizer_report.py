"""tools/tokenizer_report.py: fragmentation numbers and term splits, side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.tokenizer import (
    TokenizerTrainConfig,
    load_tokenizer,
    train_bpe_tokenizer,
)
from megatron_biomed.tokenizer.report import fragmentation, term_pieces

ROOT = Path(__file__).resolve().parents[2]
PUBMED = ROOT.parent / "shared" / "data" / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"


@pytest.fixture(scope="module")
def two_tokenizers(tmp_path_factory):
    d = tmp_path_factory.mktemp("toks")
    general = ["The weather was mild and the market opened early on Monday morning."] * 40
    train_bpe_tokenizer(general, TokenizerTrainConfig(vocab_size=300, min_frequency=1), d / "general")
    train_bpe_tokenizer(synthetic_abstracts(400, seed=1), TokenizerTrainConfig(vocab_size=1200), d / "bio")
    return d / "general", d / "bio"


def test_fragmentation_counts(two_tokenizers):
    tok = load_tokenizer(two_tokenizers[1])
    texts = ["clonidine was given", "two words"]
    s = fragmentation(tok, texts)
    assert (s.documents, s.words) == (2, 5)
    assert s.tokens == sum(len(tok.encode(t)) for t in texts)
    pieces = term_pieces(tok, "dexamethasone")
    assert "".join(pieces) == " dexamethasone"


def test_cli_side_by_side(tmp_path, two_tokenizers):
    general, bio = two_tokenizers
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"text": t}) + "\n" for t in synthetic_abstracts(50, seed=77)))
    terms = tmp_path / "terms.txt"
    terms.write_text("# my terms\nclonidine\ncardiomyopathy\n")
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "tools/tokenizer_report.py", "--tokenizers", str(general), str(bio),
                        "--input", str(held), "--terms", str(terms), "--json-output", str(out)],
                       check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| tokens per word |" in r.stdout and "| clonidine |" in r.stdout
    assert "| acetylcholinesterase |" in r.stdout  # the default list is included
    rep = {x["name"]: x for x in json.loads(out.read_text())}
    # the domain tokenizer cuts domain text into fewer pieces than the general one
    assert rep["bio"]["tokens_per_word"] < rep["general"]["tokens_per_word"]
    assert len(rep["bio"]["term_pieces"]["clonidine"]) < len(rep["general"]["term_pieces"]["clonidine"])
    bio_tok = load_tokenizer(bio)
    assert rep["bio"]["stats"]["tokens"] == sum(
        len(bio_tok.encode(json.loads(line)["text"])) for line in held.open())


@pytest.mark.skipif(not PUBMED.is_file(), reason=f"shared PubMed abstracts not found at {PUBMED}")
def test_cli_on_pubmed_held_out(two_tokenizers):
    general, bio = two_tokenizers
    r = subprocess.run([sys.executable, "tools/tokenizer_report.py", "--tokenizers", str(general), str(bio),
                        "--input", str(PUBMED), "--json-keys", "abstract", "--skip-bad",
                        "--max-documents", "300"], check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "| documents | 300 | 300 |" in r.stdout
