"""Bad training data is refused before the first step, with the file named (megatron_biomed/data/preflight.py).

Four failure classes, each on tiny data written by our IndexedDatasetWriter: a ``.bin`` shorter than its ``.idx``
says, an ``.idx`` with a bad magic or version, a token id outside the tokenizer's vocabulary, and a prefix
rebuilt after megatron-core's index cache was made from it (which megatron-core itself does not notice: shown
below). Each is checked through the task the trainer builds (``build_task``, what tools/pretrain.py runs before
the process group and the model), and one through tools/pretrain.py itself.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from launch import run_pretrain

from megatron_biomed.config.loading import load_config
from megatron_biomed.data import gpt_dataset as gpt
from megatron_biomed.data import preflight
from megatron_biomed.data.errors import DataError
from megatron_biomed.data.gpt_dataset import TokenInfo
from megatron_biomed.data.indexed import IndexedDatasetWriter

VOCAB = 400
TOKENS = TokenInfo(vocab_size=VOCAB, eod=0)


def _write(prefix: Path, n_docs: int = 40, seed: int = 0, bad_token_at: int | None = None, longer: int = 0) -> str:
    """``n_docs`` documents of 5..40 (+ ``longer``) ids in [1, VOCAB) ending in eod 0; ``bad_token_at``: document
    7's token ``bad_token_at`` becomes VOCAB + 100."""
    rng = np.random.default_rng(seed)
    with IndexedDatasetWriter(str(prefix), np.uint16) as w:
        for d in range(n_docs):
            doc = rng.integers(1, VOCAB, size=int(rng.integers(5, 40)) + longer).tolist() + [0]
            if d == 7 and bad_token_at is not None:
                doc[bad_token_at] = VOCAB + 100
            w.add_document(doc)
    return str(prefix)


def _task(prefix: str, cache: Path, *sets: str):
    """The pretraining task tools/pretrain.py builds for ``prefix`` (this is where the check runs)."""
    from megatron_biomed.training.tasks import build_task

    cfg = load_config("tiny-biomedlm", overrides=[f"data.blend={prefix}", f"data.cache_dir={cache}", *sets])
    return build_task(cfg, TOKENS)


def _dataset(prefix: str, cache: Path):
    train, _, _ = gpt.build_gpt_datasets([prefix], seq_length=16, seed=1, num_samples=(64, 0, 0), tokens=TOKENS,
                                         split="100,0,0", cache_dir=str(cache))  # fmt: skip
    return train


def _samples(train) -> np.ndarray:
    return np.stack([np.asarray(train[i]["tokens"]) for i in range(64)])


def _build(prefix: str, cache: Path) -> np.ndarray:
    return _samples(_dataset(prefix, cache))


def test_good_data_passes_and_the_token_scan_is_memoised(tmp_path):
    prefix = _write(tmp_path / "ok")
    first = preflight.check_prefix(prefix, vocab_size=VOCAB, cache_dir=str(tmp_path / "cache"))
    again = preflight.check_prefix(prefix, vocab_size=VOCAB, cache_dir=str(tmp_path / "cache"))
    assert first.scanned and not again.scanned
    assert (first.documents, first.token_min) == (40, 0) and first.token_max < VOCAB
    assert (again.token_min, again.token_max) == (first.token_min, first.token_max)


@pytest.mark.parametrize("cut", [2, -2])
def test_bin_shorter_or_longer_than_its_idx_is_refused(tmp_path, cut):
    prefix = _write(tmp_path / "pm")
    size = os.path.getsize(prefix + ".bin")
    with open(prefix + ".bin", "r+b") as f:
        f.truncate(size - cut)
    with pytest.raises(DataError) as err:
        _task(prefix, tmp_path / "cache")
    msg = str(err.value)
    assert f"{prefix}.bin is {size - cut} bytes" in msg and f"the {size} bytes its .idx describes" in msg
    assert ("shorter" if cut > 0 else "longer") in msg


@pytest.mark.parametrize(
    "offset,value,expect",
    [(0, b"XXIDIDX\x00\x00", "not a megatron .idx file (bad header)"),
     (9, struct.pack("<Q", 2), "unsupported version 2"),
     (17, struct.pack("<B", 99), "dtype code 99")],
)  # fmt: skip
def test_idx_with_bad_magic_version_or_dtype_is_refused(tmp_path, offset, value, expect):
    prefix = _write(tmp_path / "pm")
    with open(prefix + ".idx", "r+b") as f:
        f.seek(offset)
        f.write(value)
    with pytest.raises(DataError, match="data.blend: ") as err:
        _task(prefix, tmp_path / "cache")
    assert f"{prefix}.idx: " in str(err.value) and expect in str(err.value)


def test_token_outside_the_vocabulary_is_refused_with_its_place(tmp_path):
    prefix = _write(tmp_path / "pm", bad_token_at=3)
    with pytest.raises(DataError) as err:
        _task(prefix, tmp_path / "cache")
    msg = str(err.value)
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(prefix)
    where = int(ds.index.sequence_pointers[7]) // 2 + 3
    assert f"{prefix}.bin: token id {VOCAB + 100} at token {where} (sequence 7, document 7)" in msg
    assert f"the tokenizer has {VOCAB} tokens" in msg
    # the memoised range refuses it again without a scan
    with pytest.raises(DataError, match="outside the vocabulary"):
        _task(prefix, tmp_path / "cache")
    # the same file is fine for a tokenizer that has the id
    assert preflight.check_prefix(prefix, vocab_size=VOCAB + 101, cache_dir=str(tmp_path / "cache")).token_max == 500


def test_rewritten_bin_is_scanned_again(tmp_path):
    """The memoised token range is keyed by the .bin's size, mtime and inode: a rewritten file is rescanned."""
    prefix = _write(tmp_path / "pm")
    _task(prefix, tmp_path / "cache")
    _write(tmp_path / "pm", bad_token_at=3)  # no index cache built yet, so this is no stale-cache case
    with pytest.raises(DataError, match=f"{prefix}.bin: token id 500"):
        _task(prefix, tmp_path / "cache")


def test_eval_corpus_is_checked_too(tmp_path):
    good, bad = _write(tmp_path / "pm"), _write(tmp_path / "held", bad_token_at=0)
    with pytest.raises(DataError, match=f"train.eval_corpora: {bad}.bin: token id 500"):
        _task(good, tmp_path / "cache", f"train.eval_corpora=[held={bad}]")


def test_prefix_rebuilt_after_the_index_cache_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    prefix = _write(tmp_path / "pm", n_docs=40, seed=0)
    before = _build(prefix, cache)
    npys = sorted(p.name for p in cache.glob("*GPTDataset*.npy"))
    assert npys, "megatron-core wrote no index cache"
    os.utime(prefix + ".idx")  # touched or copied, same content: still fine, no rebuild
    assert np.array_equal(_build(prefix, cache), before)

    # The prefix is rebuilt from other, longer documents (so the old sample indices still fit in them).
    _write(tmp_path / "pm", n_docs=40, seed=5, longer=40)
    fresh = _build(prefix, tmp_path / "fresh_cache")
    # megatron-core alone takes the old indices for the new data without a word when the datasets are built;
    # reading samples then fails mid-run (a sample of the wrong length) or gives other samples than a fresh build
    monkeypatch.setattr(preflight, "check_prefixes", lambda *a, **k: [])
    stale = _dataset(prefix, cache)
    try:
        assert not np.array_equal(_samples(stale), fresh)
    except IndexError:
        pass
    monkeypatch.undo()

    with pytest.raises(DataError) as err:
        _build(prefix, cache)
    msg = str(err.value)
    assert f"{prefix}.idx changed since megatron-core's index cache in {cache}" in msg
    assert all(name in msg for name in npys)
    with pytest.raises(DataError, match="changed since megatron-core's index cache"):
        _task(prefix, cache)
    for line in msg.splitlines()[1:]:  # deleting what the message lists lets the cache be rebuilt
        Path(line.strip()).unlink()
    assert np.array_equal(_build(prefix, cache), fresh)


def test_pretrain_tool_stops_before_step_one_naming_the_file(tmp_path):
    """tools/pretrain.py exits 2 with the file named, before the process group, the model or a step."""
    prefix = _write(tmp_path / "pm")
    with open(prefix + ".bin", "r+b") as f:
        f.truncate(os.path.getsize(prefix + ".bin") - 10)
    from toydata import make_tokenizer

    tok = make_tokenizer(tmp_path / "tok")
    proc = run_pretrain(1, [f"data.blend={prefix}", f"data.tokenizer={tok}", f"data.cache_dir={tmp_path / 'c'}",
                            f"logging.metrics_file={tmp_path / 'm.jsonl'}"], tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"error: data.blend: {prefix}.bin is" in proc.stderr and "shorter than" in proc.stderr
    assert "parallel layout" not in proc.stdout + proc.stderr and not (tmp_path / "m.jsonl").exists()


def test_evaluate_tool_corpus_is_checked(tmp_path):
    """tools/evaluate.py's --corpus of a .bin/.idx prefix goes through the same check (no index cache there)."""
    from megatron_biomed.eval.corpora import CorpusError, load_documents

    bad = _write(tmp_path / "held", bad_token_at=0)
    with pytest.raises(CorpusError, match=f"--corpus: {bad}.bin: token id 500"):
        load_documents(bad, vocab_size=VOCAB)
    assert len(load_documents(bad, vocab_size=VOCAB + 101)) == 40
    assert not (Path(bad) / "cache").exists()
