"""The .bin/.idx writer's large-index paths, reached for real: more than 2^20 buffered index entries (spilled to
side files several times) and more than 2^22 sequences (the .idx pointers written in two blocks, and the merger's
blocked reads), byte-identical to megatron-core's IndexedDatasetBuilder and read back by its IndexedDataset.

64 documents of 65,600 sequences of 1-2 tokens: 4,198,400 sequences. megatron-core's builder computes the
pointers in a Python loop (about 5 s of this test on the 2-core CI machine); ours takes about 0.5 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from megatron_biomed.data.indexed import IndexedDatasetWriter, merge_datasets
from megatron_biomed.data.indexed import merge as merge_module
from megatron_biomed.data.indexed import writer as writer_module

DOCS, SEQS = 64, 65_600


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 3, size=(DOCS, SEQS))
    ids = [rng.integers(0, 60_000, size=int(row.sum())).astype(np.uint16) for row in lengths]
    return lengths, ids


def test_large_index_is_byte_identical_to_megatron_core_and_reads_back(corpus, tmp_path, monkeypatch):
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

    lengths, ids = corpus
    n_seq = DOCS * SEQS
    assert n_seq > writer_module._BLOCK > writer_module._SPILL  # both thresholds are crossed, not patched

    ref = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.uint16)
    for row, doc in zip(lengths, ids):
        ref.add_document(torch.from_numpy(doc.astype(np.int64)), row.tolist())
    ref.finalize(str(tmp_path / "ref.idx"))

    spills = []
    real_spill = IndexedDatasetWriter._spill
    monkeypatch.setattr(IndexedDatasetWriter, "_spill", lambda self: (spills.append(self._buffered), real_spill(self)))
    with IndexedDatasetWriter(str(tmp_path / "ours"), np.uint16) as w:
        for row, doc in zip(lengths, ids):
            w.add_documents(doc, row, np.array([SEQS]))
    assert len([b for b in spills if b >= writer_module._SPILL]) >= 4  # spilled mid-stream, not only at the end

    for ext in (".bin", ".idx"):
        a, b = (tmp_path / f"ref{ext}").read_bytes(), (tmp_path / f"ours{ext}").read_bytes()
        assert a == b, f"{ext} differs from megatron-core's (len {len(a)} vs {len(b)})"

    ds = IndexedDataset(str(tmp_path / "ours"))
    assert len(ds) == n_seq and ds.document_indices[-1] == n_seq and len(ds.document_indices) == DOCS + 1
    flat_lengths = lengths.reshape(-1)
    starts = np.concatenate([[0], np.cumsum(flat_lengths)])
    flat_ids = np.concatenate(ids)
    block = writer_module._BLOCK
    for i in (0, writer_module._SPILL, block - 1, block, n_seq - 1):  # around the thresholds and the last
        assert np.array_equal(ds[i], flat_ids[starts[i] : starts[i + 1]]), i

    # The merger reads a shard of more than one block (2^22 entries) and writes the pointers across it.
    small = tmp_path / "small"
    with IndexedDatasetWriter(str(small), np.uint16) as w:
        w.add_document([1, 2, 3], [2, 1])
    assert merge_module._BLOCK < n_seq
    merge_datasets([str(tmp_path / "ours"), str(small)], str(tmp_path / "merged"))
    merged = IndexedDataset(str(tmp_path / "merged"))
    assert len(merged) == n_seq + 2 and len(merged.document_indices) == DOCS + 2
    assert np.array_equal(merged.sequence_lengths[:n_seq], ds.sequence_lengths)
    assert np.array_equal(merged.index.sequence_pointers[:n_seq], ds.index.sequence_pointers)
    assert np.array_equal(merged.document_indices[: DOCS + 1], ds.document_indices)
    assert merged[n_seq].tolist() == [1, 2] and merged[n_seq + 1].tolist() == [3]
    assert np.array_equal(merged[block], ds[block])
