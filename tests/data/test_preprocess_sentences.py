"""--split-sentences: the biomedical Punkt model, tools/train_punkt.py, and sentence-level output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.data.indexed.sentences import (
    load_params,
    load_sentence_splitter,
    train_punkt,
)
from megatron_biomed.tokenizer import (
    TokenizerTrainConfig,
    load_tokenizer,
    train_bpe_tokenizer,
)

ROOT = Path(__file__).resolve().parents[2]

# text of our own, with the abbreviations that trip generic English Punkt
TRICKY = [
    "Smith et al. reported that clonidine lowered blood pressure in rats.",
    "Morphine 2 mg/kg i.v. was given before surgery in all patients.",
    "The mean weight was approx. 70 kg in the control group.",
    "Effects were larger for low doses, e.g. 1 mg, than for high doses.",
]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "punkt_cache"
    monkeypatch.setenv("MEGATRON_BIOMED_CACHE", str(cache))
    monkeypatch.delenv("NLTK_DATA", raising=False)


def test_bundled_model_keeps_biomedical_abbreviations_inside_sentences():
    split = load_sentence_splitter("bundled")
    assert split(" ".join(TRICKY)) == TRICKY
    # and it still splits plain sentence ends
    assert split("Rats were used. Mice were not. Doses varied.") == [
        "Rats were used.", "Mice were not.", "Doses varied."]


def test_trainer_learns_the_abbreviations_from_text_alone():
    params = train_punkt(synthetic_abstracts(1500, seed=5), extra_abbreviations=())
    for abbrev in ("al", "i.v", "approx"):
        assert abbrev in params.abbrev_types, abbrev
    untrained = train_punkt(["Rats were used. Mice were not."], extra_abbreviations=())
    assert "al" not in untrained.abbrev_types


def test_keep_newlines_round_trips_text():
    text = "First line of rats.\nSecond, et al. data.\n\nThird one."
    parts = load_sentence_splitter("bundled", keep_newlines=True)(text)
    assert "".join(parts) == text and len(parts) == 3 and parts[0].endswith("\n")


def test_train_punkt_cli_json_model(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in synthetic_abstracts(600, seed=9)))
    out = tmp_path / "punkt.json"
    r = subprocess.run([sys.executable, "tools/train_punkt.py", "--input", str(src), "--output", str(out)],
                       check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert {"al", "i.v", "approx"} <= load_params(out).abbrev_types
    assert load_sentence_splitter(str(out))(" ".join(TRICKY)) == TRICKY


def test_users_nltk_data_punkt_is_taken(tmp_path):
    # a user's punkt_tab model without any abbreviations: it must be the one used under "auto"
    lang = tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    lang.mkdir(parents=True)
    for name in ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab"):
        (lang / name).write_text("")
    code = ("from megatron_biomed.data.indexed.sentences import load_sentence_splitter as L;"
            "print(len(L('auto')('Smith et al. reported it. Then more.')))")
    env = dict(os.environ, NLTK_DATA=str(tmp_path / "nltk_data"))
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"  # generic model: breaks after "et al."
    assert len(load_sentence_splitter("auto")("Smith et al. reported it. Then more.")) == 2


def test_sentence_output_matches_megatron_builder(tmp_path):
    import torch
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    texts = synthetic_abstracts(120, seed=21)
    tokdir = tmp_path / "tok"
    train_bpe_tokenizer(texts, TokenizerTrainConfig(vocab_size=600), tokdir)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    r = subprocess.run([sys.executable, "tools/preprocess_data.py", "--input", str(src), "--tokenizer",
                        str(tokdir), "--output-prefix", str(tmp_path / "o"), "--split-sentences",
                        "--append-eod", "--workers", "2", "--no-progress"],
                       check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    tok, split = load_tokenizer(tokdir), load_sentence_splitter("bundled")
    ref = tmp_path / "ref"
    b = IndexedDatasetBuilder(str(ref) + ".bin", dtype=DType.optimal_dtype(tok.vocab_size))
    n_sent = 0
    for t in texts:  # Megatron-LM's Encoder.encode with split sentences
        sents = [ids for ids in (tok.encode(s) for s in split(t)) if ids]
        sents[-1] = sents[-1] + [tok.eod]
        b.add_document(torch.tensor([i for s in sents for i in s]), [len(s) for s in sents])
        n_sent += len(sents)
    b.finalize(str(ref) + ".idx")
    assert n_sent > 3 * len(texts)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"o_text_sentence{ext}").read_bytes() == Path(str(ref) + ext).read_bytes()
