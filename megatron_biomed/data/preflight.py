"""Pre-flight check of ``.bin``/``.idx`` prefixes against the run's config, before any training step.

What megatron-core would otherwise meet mid-run, or never notice, each refused here with the file named:

* an ``.idx`` that is not a megatron index (bad magic), of another version, with an unknown dtype code,
  truncated, or whose document index does not end at its sequence count;
* a ``.bin`` shorter (or longer) than its ``.idx`` says: megatron-core maps it and fails only when a sample
  reaches past the end;
* a token id outside the vocabulary (negative, or >= the tokenizer's vocabulary size): on CPU an index error
  in the embedding at whatever step first draws it, on GPU a device-side assert, or, below a padded
  ``model.vocab_size``, silent training on rows no token maps to;
* a prefix whose ``.idx`` changed since megatron-core's index cache was built from it
  (:mod:`megatron_biomed.data.index_cache`).

Cost: the header and size checks read 34 bytes and the last index entry; the stale-cache check reads the
``.idx`` once for a CRC32 (about 12 bytes per sequence) when its size, mtime or inode changed. The vocabulary
check is one ``min``/``max`` pass over the ``.bin`` in blocks of 64 Mi tokens (rank 0 shows a progress bar past
1 GB): 0.2-0.7 s per GB from the page cache on the loaded 2-core CI machine (1.6-4.8 GB/s), otherwise the disk's
read speed (a 100 GB corpus at 1 GB/s: under two minutes, on every rank at once on the first launch). The result
is memoised in the cache directory's sidecar (keyed by the .bin's size, mtime and inode), so a later launch on
the same files skips it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from megatron.core.datasets.indexed_dataset import IndexedDataset
from tqdm import tqdm

from megatron_biomed.data import index_cache
from megatron_biomed.data.errors import DataError
from megatron_biomed.data.indexed.format import read_index

log = logging.getLogger(__name__)

SCAN_BLOCK = 1 << 26  # tokens per min/max block of the vocabulary scan
_PROGRESS_BYTES = 1 << 30  # show a progress bar (rank 0) for .bin files larger than this


@dataclass(frozen=True)
class PrefixSummary:
    prefix: str
    sequences: int
    documents: int
    tokens: int
    token_min: int
    token_max: int
    scanned: bool  # the .bin was read for the token range (False: memoised from an earlier launch)


def check_prefixes(
    prefixes: Sequence[str], *, vocab_size: Optional[int], cache_dir: Optional[str], field: str = "data.blend"
) -> list[PrefixSummary]:
    """Check every prefix (see the module docstring); raise :class:`DataError` naming the file and ``field``."""
    return [check_prefix(p, vocab_size=vocab_size, cache_dir=cache_dir, field=field) for p in prefixes]


def check_prefix(prefix: str, *, vocab_size: Optional[int], cache_dir: Optional[str],
                 field: str = "data.blend", index_cache_used: bool = True) -> PrefixSummary:  # fmt: skip
    """One prefix. ``cache_dir``: megatron-core's index cache directory (None: its default beside the data);
    ``index_cache_used=False`` for readers that build no GPTDataset (no stale-cache check, no memo)."""
    idx_path, bin_path = prefix + ".idx", prefix + ".bin"
    for path in (idx_path, bin_path):
        if not os.path.isfile(path):
            raise DataError(f"{field}: {path} does not exist (prefixes name files without .bin/.idx)")
    try:
        index = read_index(prefix)
    except ValueError as e:
        raise DataError(f"{field}: {e}; rebuild it with tools/preprocess_data.py") from e
    n_seq, docs = index.num_sequences, index.document_indices
    if len(docs) == 0 or docs[0] != 0 or docs[-1] != n_seq:
        raise DataError(f"{field}: {idx_path}: its document index does not run from 0 to its {n_seq} sequences "
                        "(a damaged index); rebuild it with tools/preprocess_data.py")  # fmt: skip
    itemsize = np.dtype(index.dtype).itemsize
    want = int(index.sequence_pointers[-1]) + int(index.sequence_lengths[-1]) * itemsize if n_seq else 0
    have = os.path.getsize(bin_path)
    if have != want:
        how = "shorter" if have < want else "longer"
        raise DataError(
            f"{field}: {bin_path} is {have} bytes, {how} than the {want} bytes its .idx describes "
            f"({n_seq} sequences of {np.dtype(index.dtype).name}); "
            + ("the file is truncated (an interrupted copy or write?): copy or rebuild it"
               if have < want else "the .bin and .idx are not one pair: rebuild them together"))  # fmt: skip

    record = None
    if index_cache_used:
        root = index_cache.cache_root(prefix, cache_dir)
        records = index_cache.SourceRecords(root)
        record = records.get(prefix)
        crc = index_cache.index_crc(prefix, record)
        stale = index_cache.stale_cache_message(prefix, root, record, crc)
        if stale:
            raise DataError(f"{field}: {stale}")

    bin_stat = index_cache.file_stat(bin_path)
    memo = record.get("bin") if record else None
    scanned = not (memo and memo.get("stat") == bin_stat)
    lo, hi = _token_range(prefix, index.dtype, want // itemsize) if scanned else (memo["min"], memo["max"])
    if index_cache_used:
        new_record = {"idx": {"stat": index_cache.file_stat(idx_path), "crc32": crc},
                      "bin": {"stat": bin_stat, "min": lo, "max": hi}}  # fmt: skip
        if new_record != record:
            records.put(prefix, new_record)
    if vocab_size is not None and n_seq and (lo < 0 or hi >= vocab_size):
        raise DataError(f"{field}: {bin_path}: {_first_bad_token(prefix, index, vocab_size)}; the tokenizer has "
                        f"{vocab_size} tokens (ids 0..{vocab_size - 1}): was this file made with another "
                        "tokenizer? Rebuild it with data.tokenizer's tokenizer")  # fmt: skip
    return PrefixSummary(prefix, n_seq, index.num_documents, want // itemsize, lo, hi, scanned)


def _bin_blocks(prefix: str, dtype, n_tokens: int):
    """(first token, block) over ``<prefix>.bin`` through megatron-core's own reader."""
    reader = IndexedDataset(prefix, mmap=True).bin_reader
    itemsize = np.dtype(dtype).itemsize
    for start in range(0, n_tokens, SCAN_BLOCK):
        yield start, reader.read(dtype=dtype, count=min(SCAN_BLOCK, n_tokens - start), offset=start * itemsize)


def _token_range(prefix: str, dtype, n_tokens: int) -> tuple[int, int]:
    if n_tokens == 0:
        return 0, 0
    nbytes = n_tokens * np.dtype(dtype).itemsize
    show = nbytes > _PROGRESS_BYTES and os.environ.get("RANK", "0") == "0"
    bar = None
    if show:
        bar = tqdm(total=nbytes, unit="B", unit_scale=True, desc=f"token ids of {os.path.basename(prefix)}.bin")
    t0 = time.perf_counter()
    lo, hi = None, None
    for _, block in _bin_blocks(prefix, dtype, n_tokens):
        b_lo, b_hi = int(block.min()), int(block.max())
        lo = b_lo if lo is None else min(lo, b_lo)
        hi = b_hi if hi is None else max(hi, b_hi)
        if bar:
            bar.update(block.nbytes)
    if bar:
        bar.close()
    log.info("%s.bin: token ids %d..%d (%.1f MB scanned in %.2f s)", prefix, lo, hi, nbytes / 1e6,
             time.perf_counter() - t0)  # fmt: skip
    return lo, hi


def _first_bad_token(prefix: str, index, vocab_size: int) -> str:
    """Where the first out-of-vocabulary id is: its value, token offset, sequence and document."""
    n_tokens = int(index.sequence_pointers[-1]) // np.dtype(index.dtype).itemsize + int(index.sequence_lengths[-1])
    for start, block in _bin_blocks(prefix, index.dtype, n_tokens):
        bad = np.flatnonzero((block < 0) | (block >= vocab_size))
        if bad.size:
            tok = start + int(bad[0])
            ptr = tok * np.dtype(index.dtype).itemsize
            seq = int(np.searchsorted(index.sequence_pointers, ptr, side="right")) - 1
            doc = int(np.searchsorted(index.document_indices, seq, side="right")) - 1
            return (f"token id {int(block[bad[0]])} at token {tok} (sequence {seq}, document {doc}) is outside "
                    f"the vocabulary; {bad.size} such ids in the first block holding one")  # fmt: skip
    return "a token id is outside the vocabulary"
