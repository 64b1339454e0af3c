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
            raise ValueError(
                f"{p}.idx: token dtype {np.dtype(ix.dtype).name} differs from "
                f"{prefixes[0]}.idx ({np.dtype(dtype).name}); shards must share a tokenizer"
            )
        bin_size = os.path.getsize(p + ".bin")
        want = sum(int(b.sum(dtype=np.int64)) for b in ix.iter_blocks("sequence_lengths", _BLOCK))
        want *= np.dtype(dtype).itemsize
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
                out.writelines(lens.tobytes() for lens in ix.iter_blocks("sequence_lengths", _BLOCK))
            ptr = np.int64(0)
            for ix in indices:
                for lens in ix.iter_blocks("sequence_lengths", _BLOCK):
                    ptr = _write_pointer_block(out, lens.astype(np.int64), itemsize, ptr)
            out.write(np.zeros(1, dtype=np.int64).tobytes())
            offset = 0
            for ix in indices:
                out.writelines(
                    (docs + offset).tobytes() for docs in ix.iter_blocks("document_indices", _BLOCK, start=1)
                )
                offset += ix.num_sequences
        os.replace(tmp_bin, output_prefix + ".bin")
        os.replace(tmp_idx, output_prefix + ".idx")
    except BaseException:
        for t in (tmp_bin, tmp_idx):
            if os.path.exists(t):
                os.remove(t)
        raise
    return n_doc_idx - 1, n_seq
