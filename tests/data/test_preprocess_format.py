"""tools/preprocess_data.py writes what megatron-core's IndexedDatasetBuilder writes, byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from megatron_biomed.data.indexed import IndexedDatasetWriter, read_index
from megatron_biomed.data.indexed.preprocess import PreprocessConfig, preprocess
from megatron_biomed.data.indexed.sample_text import synthetic_abstracts
from megatron_biomed.tokenizer import (
    TokenizerTrainConfig,
    load_tokenizer,
    train_bpe_tokenizer,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_bpe_tokenizer(synthetic_abstracts(400, seed=7), TokenizerTrainConfig(vocab_size=800), d)
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    texts = synthetic_abstracts(900, seed=11)
    texts[5] = "Unicode: 5 \u00b5g/mL \u03b1-synuclein \u2264 3 \u00b0C \U0001F9EA <|endoftext|> in text."
    for i, part in enumerate((texts[:500], texts[500:])):
        (d / f"part{i}.jsonl").write_text("".join(json.dumps({"text": t, "title": t[:40]}) + "\n"
                                                  for t in part))
    return d, texts


def _reference(prefix: Path, docs: list[list[list[int]]], dtype) -> None:
    """megatron-core's own builder: docs are lists of sentences of ids."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    b = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=dtype)
    for sents in docs:
        flat = [i for s in sents for i in s]
        b.add_document(torch.tensor(flat, dtype=torch.int64), [len(s) for s in sents])
    b.finalize(str(prefix) + ".idx")


def _same_bytes(a: Path | str, b: Path | str) -> None:
    for ext in (".bin", ".idx"):
        x, y = Path(str(a) + ext).read_bytes(), Path(str(b) + ext).read_bytes()
        assert x == y, f"{ext} differs (len {len(x)} vs {len(y)})"


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_writer_is_byte_identical_to_megatron_builder(tmp_path, dtype):
    rng = np.random.default_rng(0)
    docs = [[list(rng.integers(0, 60000, size=int(n))) for n in rng.integers(1, 30, size=k)]
            for k in rng.integers(1, 4, size=200)]
    _reference(tmp_path / "ref", docs, dtype)
    with IndexedDatasetWriter(str(tmp_path / "ours"), dtype) as w:
        for i, sents in enumerate(docs):
            if i % 2:
                w.add_document([t for s in sents for t in s], [len(s) for s in sents])
            else:  # the batched path
                w.add_documents(np.array([t for s in sents for t in s]), np.array([len(s) for s in sents]),
                                np.array([len(sents)]))
    _same_bytes(tmp_path / "ref", tmp_path / "ours")
    ix = read_index(str(tmp_path / "ours"))
    assert ix.num_documents == len(docs) and ix.dtype == dtype


@pytest.mark.parametrize("workers", [1, 3])
def test_cli_matches_megatron_builder_and_reads_back(tmp_path, tokdir, corpus, workers):
    d, texts = corpus
    prefix = tmp_path / "out"
    r = subprocess.run([sys.executable, "tools/preprocess_data.py", "--input", str(d / "*.jsonl"),
                        "--json-keys", "text", "title", "--tokenizer", str(tokdir),
                        "--output-prefix", str(prefix), "--workers", str(workers), "--append-eod",
                        "--no-progress"], check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    tok = load_tokenizer(tokdir)
    from megatron.core.datasets.indexed_dataset import DType, IndexedDataset

    for key, docs in (("text", texts), ("title", [t[:40] for t in texts])):
        ref = tmp_path / f"ref_{key}"
        _reference(ref, [[tok.encode(t) + [tok.eod]] for t in docs], DType.optimal_dtype(tok.vocab_size))
        ours = f"{prefix}_{key}_document"
        _same_bytes(ref, ours)
        ds = IndexedDataset(ours)
        assert len(ds) == len(docs)
        assert tok.decode(ds[5].tolist()) == docs[5] + "<|endoftext|>"
    assert not list(tmp_path.glob(".*parts*")), "temporary parts left behind"


def test_preprocess_does_not_import_torch(tmp_path, tokdir, corpus):
    d, _ = corpus
    code = ("import sys; from megatron_biomed.data.indexed.preprocess import PreprocessConfig, preprocess;"
            f"preprocess(PreprocessConfig(input=[{str(d)!r}], tokenizer={str(tokdir)!r},"
            f" output_prefix={str(tmp_path / 'o')!r}, progress=False));"
            "assert 'torch' not in sys.modules and 'megatron.core' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_workers_and_backends_give_identical_files(tmp_path, tokdir, corpus):
    from megatron_biomed.tokenizer.batch_encode import gigatoken_available

    d, _ = corpus
    backends = ["hf"] + (["gigatoken"] if gigatoken_available() else [])
    outs = []
    for backend in backends:
        for workers in (1, 2):
            prefix = tmp_path / f"{backend}{workers}"
            preprocess(PreprocessConfig(input=[str(d)], tokenizer=str(tokdir), output_prefix=str(prefix),
                                        workers=workers, append_eod=True, tokenizer_backend=backend,
                                        progress=False))
            outs.append(f"{prefix}_text_document")
    for o in outs[1:]:
        _same_bytes(outs[0], o)
