"""Streaming writer of megatron ``.bin``/``.idx`` pairs, byte-identical to megatron-core's
``IndexedDatasetBuilder`` for the same token ids, without holding the ids or the index in memory.

Everything goes to temporary names next to the target and is renamed into place by
:meth:`IndexedDatasetWriter.finalize` (``.bin`` first, ``.idx`` last), so a failed run never leaves
a pair that looks complete. Sequence lengths and document ends are spilled to side files and the
``.idx`` is assembled from them in blocks.
"""

from __future__ import annotations

import os
import shutil
from typing import Self

import numpy as np

from megatron_biomed.data.indexed.format import DTYPE_CODES, encode_index_prefix

_BLOCK = 1 << 22  # index entries per block when assembling the .idx
_SPILL = 1 << 20  # buffered index entries before spilling to a side file


def _open_tmp(path: str):
    return open(path, "wb", buffering=1 << 20)


class IndexedDatasetWriter:
    """Write ``<prefix>.bin`` and ``<prefix>.idx``.

    Use as a context manager (an exception aborts and removes the temporary files), or call
    :meth:`finalize` / :meth:`abort` yourself.
    """

    def __init__(self, prefix: str, dtype: type = np.int32) -> None:
        if dtype not in DTYPE_CODES:
            raise ValueError(f"dtype {dtype} is not a megatron index dtype")
        self.prefix = prefix
        self.dtype = dtype
        self.itemsize = np.dtype(dtype).itemsize
        tag = f".tmp-{os.getpid()}-{id(self):x}"
        self._tmp = {k: f"{prefix}.{k}{tag}" for k in ("bin", "idx", "lens", "docs")}
        d = os.path.dirname(os.path.abspath(prefix))
        os.makedirs(d, exist_ok=True)
        self._bin = _open_tmp(self._tmp["bin"])
        self._lens_f = _open_tmp(self._tmp["lens"])
        self._docs_f = _open_tmp(self._tmp["docs"])
        self._lens: list[np.ndarray] = []
        self._docs: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self._buffered = 0
        self.num_sequences = 0
        self.num_documents = 0
        self.num_tokens = 0
        self._closed = False

    # -- adding data -------------------------------------------------------------------------
    def add_document(self, ids, lengths=None) -> None:
        """One document; ``lengths`` splits it into sequences (sentences), default one sequence."""
        arr = np.asarray(ids)
        lens = np.asarray([arr.size] if lengths is None else lengths, dtype=np.int64)
        self.add_documents(arr, lens, np.asarray([lens.size], dtype=np.int64))

    def add_documents(self, ids: np.ndarray, sequence_lengths: np.ndarray,
                      sequences_per_document: np.ndarray | None = None) -> None:
        """Many documents at once: ``ids`` back to back, the length of each sequence, and how
        many sequences each document has (default: one sequence per document)."""
        ids = np.asarray(ids)
        seq = np.asarray(sequence_lengths, dtype=np.int64)
        if int(seq.sum()) != ids.size:
            raise ValueError(f"sequence lengths sum to {int(seq.sum())} but {ids.size} ids given")
        per_doc = (np.ones(seq.size, dtype=np.int64) if sequences_per_document is None
                   else np.asarray(sequences_per_document, dtype=np.int64))
        if int(per_doc.sum()) != seq.size:
            raise ValueError(f"documents hold {int(per_doc.sum())} sequences but {seq.size} given")
        if ids.dtype != self.dtype:
            ids = ids.astype(self.dtype)
        self._bin.write(memoryview(np.ascontiguousarray(ids)).cast("B"))
        self._lens.append(seq.astype(np.int32))
        self._docs.append(self.num_sequences + np.cumsum(per_doc))
        self._buffered += seq.size + per_doc.size
        self.num_sequences += int(seq.size)
        self.num_documents += int(per_doc.size)
        self.num_tokens += int(ids.size)
        if self._buffered >= _SPILL:
            self._spill()

    def _spill(self) -> None:
        for arrs, f in ((self._lens, self._lens_f), (self._docs, self._docs_f)):
            for a in arrs:
                f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
            arrs.clear()
        self._buffered = 0

    # -- finishing ---------------------------------------------------------------------------
    def finalize(self) -> None:
        """Write the ``.idx`` and move both files to their final names."""
        self._spill()
        for f in (self._bin, self._lens_f, self._docs_f):
            f.close()
        with _open_tmp(self._tmp["idx"]) as out:
            out.write(encode_index_prefix(self.dtype, self.num_sequences, self.num_documents + 1))
            _copy_file(self._tmp["lens"], out)
            write_pointers(out, self._tmp["lens"], self.itemsize)
            _copy_file(self._tmp["docs"], out)
        os.replace(self._tmp["bin"], self.prefix + ".bin")
        os.replace(self._tmp["idx"], self.prefix + ".idx")
        for k in ("lens", "docs"):
            os.remove(self._tmp[k])
        self._closed = True

    def abort(self) -> None:
        """Close and delete every temporary file; the final names are never touched."""
        if self._closed:
            return
        for f in (self._bin, self._lens_f, self._docs_f):
            f.close()
        for p in self._tmp.values():
            if os.path.exists(p):
                os.remove(p)
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.finalize()


def _copy_file(path: str, out) -> None:
    with open(path, "rb") as f:
        shutil.copyfileobj(f, out, 1 << 22)


def write_pointers(out, lengths_path: str, itemsize: int, start: int = 0) -> int:
    """Append int64 byte pointers (exclusive prefix sums of int32 lengths x itemsize) for the raw
    lengths in ``lengths_path``, the first one being ``start``; return the pointer after the last."""
    ptr = np.int64(start)
    size = os.path.getsize(lengths_path)
    with open(lengths_path, "rb") as f:
        for _ in range(0, size, 4 * _BLOCK):
            lens = np.frombuffer(f.read(4 * _BLOCK), dtype=np.int32).astype(np.int64)
            ptr = _write_pointer_block(out, lens, itemsize, ptr)
    return int(ptr)


def _write_pointer_block(out, lens: np.ndarray, itemsize: int, ptr: np.int64) -> np.int64:
    if lens.size == 0:
        return ptr
    sizes = lens * itemsize
    pointers = np.empty(lens.size, dtype=np.int64)
    pointers[0] = ptr
    np.cumsum(sizes[:-1], out=pointers[1:])
    pointers[1:] += ptr
    out.write(memoryview(pointers).cast("B"))
    return np.int64(ptr + sizes.sum())
