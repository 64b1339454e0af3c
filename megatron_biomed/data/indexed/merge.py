"""Merge ``.bin``/``.idx`` shards into one dataset, identical to building it in one go.

Streams every array in blocks, so memory stays flat however large the shards are. The output is
written to temporary names and renamed at the end (see writer.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import numpy as np

from megatron_biomed.data.indexed.format import encode_index_prefix, read_index
from megatron_biomed.data.indexed.writer import _write_pointer_block

_BLOCK = 1 << 22


def merge_datasets(prefixes: Sequence[str], output_prefix: str) -> tuple[int, int]:
    """Concatenate the datasets at ``prefixes`` (in order) into ``output_prefix``.

    Returns (documents, sequences). Raises ValueError naming the shard whose dtype differs."""
    if not prefixes:
        raise ValueError("merge_datasets: no input prefixes")
    indices = [read_index(p) for p in prefixes]
    dtype = indices[0].dtype
    for p, ix in zip(prefixes, indices):
        if ix.dtype != dtype:
            raise ValueError(f"{p}.idx: token dtype {np.dtype(ix.dtype).name} differs from "
                             f"{prefixes[0]}.idx ({np.dtype(dtype).name}); shards must share a tokenizer")
        bin_size = os.path.getsize(p + ".bin")
        want = int(ix.sequence_lengths.astype(np.int64).sum()) * np.dtype(dtype).itemsize
        if bin_size != want:
            raise ValueError(f"{p}.bin: {bin_size} bytes but its .idx describes {want}")
    n_seq = sum(len(ix.sequence_lengths) for ix in indices)
    n_doc_idx = 1 + sum(ix.num_documents for ix in indices)
    itemsize = np.dtype(dtype).itemsize

    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    tag = f".tmp-{os.getpid()}"
    tmp_bin, tmp_idx = output_prefix + ".bin" + tag, output_prefix + ".idx" + tag
    try:
        with open(tmp_bin, "wb") as out:
            for p in prefixes:
                with open(p + ".bin", "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        with open(tmp_idx, "wb", buffering=1 << 20) as out:
            out.write(encode_index_prefix(dtype, n_seq, n_doc_idx))
            for ix in indices:
                _write_blocks(out, ix.sequence_lengths, np.int32)
            ptr = np.int64(0)
            for ix in indices:
                for s in range(0, len(ix.sequence_lengths), _BLOCK):
                    lens = np.asarray(ix.sequence_lengths[s:s + _BLOCK], dtype=np.int64)
                    ptr = _write_pointer_block(out, lens, itemsize, ptr)
            out.write(np.zeros(1, dtype=np.int64).tobytes())
            offset = 0
            for ix in indices:
                docs = ix.document_indices
                for s in range(1, len(docs), _BLOCK):
                    block = np.asarray(docs[s:s + _BLOCK], dtype=np.int64) + offset
                    out.write(block.tobytes())
                offset += len(ix.sequence_lengths)
        os.replace(tmp_bin, output_prefix + ".bin")
        os.replace(tmp_idx, output_prefix + ".idx")
    except BaseException:
        for t in (tmp_bin, tmp_idx):
            if os.path.exists(t):
                os.remove(t)
        raise
    return n_doc_idx - 1, n_seq


def _write_blocks(out, arr: np.ndarray, dtype: type) -> None:
    for s in range(0, len(arr), _BLOCK):
        out.write(np.ascontiguousarray(arr[s:s + _BLOCK], dtype=dtype).tobytes())
