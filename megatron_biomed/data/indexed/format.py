"""The megatron-core ``.idx`` layout, shared by the writer, the merger and tests.

``.idx``: ``MMIDIDX\\x00\\x00``, version ``<Q`` 1, dtype code ``<B``, sequence count ``<Q``,
document-index count ``<Q`` (documents + 1), then int32 sequence lengths, int64 byte pointers of
each sequence into ``.bin``, int64 document indices (sequence index where each document starts,
a leading 0 and one entry per document end). ``.bin`` is the token ids back to back.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
# megatron.core.datasets.indexed_dataset.DType codes
DTYPE_CODES: dict[type, int] = {
    np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5,
    np.float64: 6, np.float32: 7, np.uint16: 8,
}
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}
PREFIX_BYTES = len(INDEX_HEADER) + 8 + 1 + 8 + 8


def dtype_for_vocab(vocab_size: int) -> type:
    """The token dtype Megatron-LM picks for a vocabulary (``DType.optimal_dtype``)."""
    return np.uint16 if vocab_size < 65500 else np.int32


def output_prefix_for(output_prefix: str, key: str, level: str) -> str:
    """Megatron-LM's naming: ``<prefix>_<key>_<document|sentence>``."""
    return f"{output_prefix}_{key}_{level}"


def encode_index_prefix(dtype: type, sequence_count: int, document_index_count: int) -> bytes:
    return (INDEX_HEADER + struct.pack("<Q", INDEX_VERSION) + struct.pack("<B", DTYPE_CODES[dtype])
            + struct.pack("<Q", sequence_count) + struct.pack("<Q", document_index_count))


@dataclass
class IndexArrays:
    """A read ``.idx``: arrays are read-only memory maps."""

    path: str
    dtype: type
    sequence_lengths: np.ndarray
    sequence_pointers: np.ndarray
    document_indices: np.ndarray

    @property
    def num_documents(self) -> int:
        return len(self.document_indices) - 1

    @property
    def num_sequences(self) -> int:
        return len(self.sequence_lengths)

    def iter_blocks(self, field: str, block: int, start: int = 0):
        """Yield ``field`` ("sequence_lengths" or "document_indices") from ``start`` in blocks read
        with plain file reads: unlike slicing the memory map, this leaves no file pages mapped
        into the process, so memory stays flat on huge indices."""
        n_seq = self.num_sequences
        dtype, count, offset = {
            "sequence_lengths": (np.int32, n_seq, PREFIX_BYTES),
            "document_indices": (np.int64, len(self.document_indices), PREFIX_BYTES + 12 * n_seq),
        }[field]
        item = np.dtype(dtype).itemsize
        with open(self.path, "rb") as f:
            for s in range(start, count, block):
                f.seek(offset + s * item)
                yield np.fromfile(f, dtype=dtype, count=min(block, count - s))


def read_index(prefix: str) -> IndexArrays:
    """Read ``<prefix>.idx``; raise ValueError naming the file if it is not a megatron index."""
    path = prefix + ".idx"
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(PREFIX_BYTES)
    if len(head) < PREFIX_BYTES or not head.startswith(INDEX_HEADER):
        raise ValueError(f"{path}: not a megatron .idx file (bad header)")
    off = len(INDEX_HEADER)
    (version,) = struct.unpack_from("<Q", head, off)
    (code,) = struct.unpack_from("<B", head, off + 8)
    (n_seq,) = struct.unpack_from("<Q", head, off + 9)
    (n_doc,) = struct.unpack_from("<Q", head, off + 17)
    if version != INDEX_VERSION or code not in CODE_DTYPES:
        raise ValueError(f"{path}: unsupported version {version} or dtype code {code}")
    expected = PREFIX_BYTES + n_seq * 4 + n_seq * 8 + n_doc * 8
    if size < expected:
        raise ValueError(f"{path}: truncated ({size} bytes, header promises {expected})")

    def mm(dtype, count, offset):
        if count == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))

    lengths = mm(np.int32, n_seq, PREFIX_BYTES)
    pointers = mm(np.int64, n_seq, PREFIX_BYTES + 4 * n_seq)
    docs = mm(np.int64, n_doc, PREFIX_BYTES + 12 * n_seq)
    return IndexArrays(path, CODE_DTYPES[code], lengths, pointers, docs)
