"""tools/merge_datasets.py: merging shards equals building the whole dataset in one go."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from megatron_biomed.data.indexed import (
    IndexedDatasetWriter,
    merge_datasets,
    read_index,
)

ROOT = Path(__file__).resolve().parents[2]


def _docs(seed: int, n: int) -> list[list[list[int]]]:
    rng = np.random.default_rng(seed)
    return [
        [rng.integers(0, 30000, size=int(k)).tolist() for k in rng.integers(1, 40, size=m)]
        for m in rng.integers(1, 5, size=n)
    ]


def _write(prefix: Path, docs, dtype=np.uint16) -> str:
    with IndexedDatasetWriter(str(prefix), dtype) as w:
        for sents in docs:
            w.add_document([t for s in sents for t in s], [len(s) for s in sents])
    return str(prefix)


def test_merge_equals_one_build_and_megatron_add_index(tmp_path):
    shards = [_docs(s, n) for s, n in ((0, 50), (1, 0), (2, 80), (3, 7))]
    prefixes = [_write(tmp_path / f"shard{i}", d) for i, d in enumerate(shards)]
    _write(tmp_path / "whole", [d for s in shards for d in s])
    r = subprocess.run(
        [sys.executable, "tools/merge_datasets.py", "--input", *prefixes, "--output-prefix", str(tmp_path / "merged")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"merged{ext}").read_bytes() == (tmp_path / f"whole{ext}").read_bytes()

    # and megatron-core's own merge (IndexedDatasetBuilder.add_index) agrees
    from megatron.core.datasets.indexed_dataset import (
        IndexedDataset,
        IndexedDatasetBuilder,
    )

    b = IndexedDatasetBuilder(str(tmp_path / "mc.bin"), dtype=np.uint16)
    for p in prefixes:
        b.add_index(p)
    b.finalize(str(tmp_path / "mc.idx"))
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"mc{ext}").read_bytes() == (tmp_path / f"merged{ext}").read_bytes()
    ds = IndexedDataset(str(tmp_path / "merged"))
    flat = [s for d in shards for doc in d for s in doc]
    assert len(ds) == len(flat) and ds[len(flat) - 1].tolist() == flat[-1]
    assert read_index(str(tmp_path / "merged")).num_documents == sum(len(s) for s in shards)


def test_input_dir_order_and_dtype_mismatch(tmp_path):
    d = tmp_path / "shards"
    _write(d / "a", _docs(5, 10))
    _write(d / "b", _docs(6, 10))
    r = subprocess.run(
        [sys.executable, "tools/merge_datasets.py", "--input-dir", str(d), "--output-prefix", str(tmp_path / "m")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    merge_datasets([str(d / "a"), str(d / "b")], str(tmp_path / "m2"))
    assert (tmp_path / "m.idx").read_bytes() == (tmp_path / "m2.idx").read_bytes()

    _write(tmp_path / "wide", _docs(7, 3), dtype=np.int32)
    with pytest.raises(ValueError, match="wide.idx: token dtype int32"):
        merge_datasets([str(d / "a"), str(tmp_path / "wide")], str(tmp_path / "bad"))
    assert not (tmp_path / "bad.idx").exists() and not list(tmp_path.glob("bad*"))
