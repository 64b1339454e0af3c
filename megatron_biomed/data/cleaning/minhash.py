"""MinHash near-duplicate detection: one definition of shingles, signatures and bands, run as stages.

The single-process index (``dedup.NearDuplicateIndex``) and the staged dedup below share every
definition here, so on the same documents in the same order both drop the same set:

1. ``write_signatures`` (one task per slice of documents): a signature per document.
2. ``write_buckets`` (one task per band group): per band, the buckets (documents with equal band
   values) holding two or more documents.
3. ``find_duplicates`` (one task): the keep-first rule over all buckets of all bands: document ``i``
   is dropped iff it shares a bucket with an earlier document ``j < i`` that is itself kept. That is
   what ``NearDuplicateIndex`` does (query, then insert only kept documents); it is order dependent
   and not the connected components of the bucket graph (a document whose only earlier neighbour was
   dropped is kept).
4. Filtering (the caller, e.g. the job arrays): skip the indices ``read_duplicates`` returns.

The four stages follow huggingface/datatrove src/datatrove/pipeline/dedup/minhash.py @ a649de79
(MinhashDedupSignature / Buckets / Cluster / Filter); its Cluster stage is union-find (one document
kept per connected component), which would also drop C in a chain A~B~C where only A~B and B~C
collide; we apply keep-first instead, so the result equals the single-process one.

Memory: ``write_buckets`` works one band at a time over all documents: a few copies of the band's
values and sort indices, about 200 bytes per document at 13 rows (measured: 1M documents, 0.29 GB
peak RSS for one band, 0.35 GB for three) plus the buckets it keeps; more band groups make more,
shorter tasks, not smaller ones. ``find_duplicates`` holds only the
members of buckets with two or more documents.

Documents are named by their global index: the position in the order the single-process tool feeds
them. Every file is a compact little-endian binary file with a 64-byte header, written under a
temporary name and published atomically; equal inputs give equal bytes (bucket and duplicate files do
not depend on how documents were split into signature tasks, nor how bands were grouped).
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from megatron_biomed.data.cleaning.textnorm import normalize_text
from megatron_biomed.data.sharding import commit, tmp_path

# our choice: cap on shingles hashed in one numpy block (x num_perm x 4 bytes = 2 MiB at 128: stays in cache)
_BLOCK_SHINGLES = 4096
_SIG_BATCH_DOCS = 512
_SCAN_RECORDS = 16384  # our choice: signature records read at once (8.5 MB at num_perm 128)


@functools.cache
def _band_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    # ekzhu/datasketch datasketch/lsh.py @ v2.0.0: MinHashLSH(threshold, num_perm) picks (b, r) with
    # _optimal_param (fp/fn weights 0.5/0.5, by numeric integration); we read them off the index
    # datasketch itself builds, so the layout cannot drift from NearDuplicateIndex's.
    from datasketch import MinHashLSH  # optional dependency: only near-dedup needs it (scipy)

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return int(lsh.b), int(lsh.r)


@functools.cache
def _permutations(num_perm: int, seed: int) -> np.ndarray:
    # ekzhu/datasketch datasketch/minhash.py @ v2.0.0, MinHash._init_permutations for the default
    # scheme "affine32": h -> a * h + b mod 2^32 with a odd, (a, b) drawn from RandomState(seed)
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    perms = np.array([a, b])
    perms.setflags(write=False)
    return perms


@dataclass(frozen=True)
class MinHashParams:
    """What decides a near-duplicate: similarity threshold, permutations, words per shingle, seed."""

    threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 5
    seed: int = 1

    @classmethod
    def from_cleaning(cls, cfg) -> MinHashParams:
        """From ``CleaningConfig.near_dup_threshold`` / ``near_dup_num_perm`` / ``near_dup_shingle``."""
        return cls(float(cfg.near_dup_threshold), int(cfg.near_dup_num_perm), int(cfg.near_dup_shingle))

    @property
    def bands(self) -> int:
        """Number of LSH bands (datasketch's optimal b for threshold and num_perm)."""
        return _band_layout(float(self.threshold), int(self.num_perm))[0]

    @property
    def rows(self) -> int:
        """Signature values per band (datasketch's optimal r); bands * rows <= num_perm."""
        return _band_layout(float(self.threshold), int(self.num_perm))[1]

    def permutations(self) -> np.ndarray:
        """The (2, num_perm) uint32 array of (a, b), as datasketch's ``MinHash.permutations``."""
        return _permutations(int(self.num_perm), int(self.seed))


def shingles(text: str, k: int) -> set[str]:
    """The word k-grams of the normalized text (one shingle of all words when there are fewer than k)."""
    words = normalize_text(text).split()
    return {" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}


def _fmix32(h: np.ndarray) -> np.ndarray:
    # MurmurHash3 fmix32 (ekzhu/datasketch datasketch/minhash.py @ v2.0.0 _fmix, width 32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _min_hash_block(hashes: list[bytes], counts: list[int], perms: np.ndarray) -> np.ndarray:
    # sha1_hash32 = the first 4 bytes of SHA-1, little-endian (datasketch/hashfunc.py @ v2.0.0)
    hv = np.frombuffer(b"".join(hashes), dtype="<u4")[::5].astype(np.uint32)
    phv = np.multiply(_fmix32(hv)[:, None], perms[0])  # uint32 arithmetic wraps: mod 2^32
    phv += perms[1]
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return np.minimum.reduceat(phv, starts, axis=0)


def signatures(texts: Iterable[str], params: MinHashParams) -> np.ndarray:
    """The MinHash signatures of ``texts`` as an (n, num_perm) uint32 array.

    Row i equals ``datasketch.MinHash(num_perm, seed, scheme="affine32")`` updated with the UTF-8
    shingles of text i (datasketch 2.0.0's default scheme and hash), computed in blocks with numpy.
    """
    perms = params.permutations()
    blocks: list[np.ndarray] = []
    hashes: list[bytes] = []
    counts: list[int] = []
    sha1 = hashlib.sha1
    for text in texts:
        grams = shingles(text, params.shingle)
        hashes.extend(sha1(g.encode("utf-8")).digest() for g in grams)
        counts.append(len(grams))
        if len(hashes) >= _BLOCK_SHINGLES:
            blocks.append(_min_hash_block(hashes, counts, perms))
            hashes, counts = [], []
    if counts:
        blocks.append(_min_hash_block(hashes, counts, perms))
    if not blocks:
        return np.zeros((0, params.num_perm), dtype=np.uint32)
    return np.concatenate(blocks)


# --- file formats -------------------------------------------------------------------------------
# our choice: a 64-byte little-endian header (magic, parameters, counts) then flat arrays, so a task
# reads any slice with numpy without parsing; the magic carries the format version.
_HEADER_SIZE = 64
_SIG_MAGIC = b"MBMHSIG1"
_SIG_HEADER = struct.Struct("<8sIIQQ")  # magic, num_perm, shingle, seed, n_docs
_BKT_MAGIC = b"MBMHBKT1"
_BKT_HEADER = struct.Struct("<8sIIQdIIIIQ8s")  # magic, num_perm, shingle, seed, threshold, bands_total,
#                                              rows, n_bands (here), 0, n_docs, docs digest
_BKT_BAND = struct.Struct("<IIQQ")  # band, 0, n_buckets, n_members
_DUP_MAGIC = b"MBMHDUP1"
_DUP_HEADER = struct.Struct("<8sQQ8s")  # magic, n_duplicates, n_docs, docs digest


def _pad(header: bytes) -> bytes:
    return header + b"\0" * (_HEADER_SIZE - len(header))


def _sig_dtype(num_perm: int) -> np.dtype:
    return np.dtype([("doc", "<i8"), ("sig", "<u4", (num_perm,))])


def _read_header(path: Path, magic: bytes, layout: struct.Struct, what: str) -> tuple:
    with open(path, "rb") as f:
        raw = f.read(_HEADER_SIZE)
    if len(raw) < _HEADER_SIZE or raw[:8] != magic:
        raise ValueError(
            f"{path}: not a MinHash {what} file (expected magic {magic!r}); rerun the stage that writes it"
        )
    return layout.unpack_from(raw)


def write_signatures(
    docs: Iterable[tuple[int, str]], path: str | Path, params: MinHashParams, *, progress: bool = False
) -> int:
    """Write the signatures of ``(global doc index, text)`` pairs to ``path``; returns the number of docs.

    Each document takes 8 + 4 * num_perm bytes (its index and its uint32 signature).
    """
    path = Path(path)
    dtype = _sig_dtype(params.num_perm)
    tmp = tmp_path(path)
    n = 0
    try:
        with open(tmp, "wb") as f:
            f.write(b"\0" * _HEADER_SIZE)
            batch: list[tuple[int, str]] = []

            def flush() -> None:
                rec = np.empty(len(batch), dtype=dtype)
                rec["doc"] = [d for d, _ in batch]
                rec["sig"] = signatures((t for _, t in batch), params)
                rec.tofile(f)

            for item in tqdm(docs, desc="minhash signatures", unit="doc", disable=not progress):
                batch.append(item)
                if len(batch) >= _SIG_BATCH_DOCS:
                    flush()
                    n += len(batch)
                    batch = []
            if batch:
                flush()
                n += len(batch)
            f.seek(0)
            f.write(_pad(_SIG_HEADER.pack(_SIG_MAGIC, params.num_perm, params.shingle, params.seed, n)))
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed task leaves nothing a rerun could mistake for output
        raise
    commit(tmp, path)
    return n


def _check_signatures(path: Path, params: MinHashParams | None) -> tuple[int, int]:
    """(num_perm, n_docs) of a signature file after checking its header, parameters and size."""
    _magic, num_perm, shingle, seed, n = _read_header(path, _SIG_MAGIC, _SIG_HEADER, "signature")
    if params is not None and (num_perm, shingle, seed) != (params.num_perm, params.shingle, params.seed):
        raise ValueError(
            f"{path}: signatures written with num_perm={num_perm} shingle={shingle} seed={seed}, "
            f"but this run uses num_perm={params.num_perm} shingle={params.shingle} seed={params.seed}; "
            "rerun the signature stage"
        )
    expected = _HEADER_SIZE + n * _sig_dtype(num_perm).itemsize
    size = path.stat().st_size
    if size != expected:
        raise ValueError(
            f"{path}: {size} bytes, expected {expected} for {n} docs (truncated or foreign file); "
            "rerun the signature stage"
        )
    return num_perm, n


def read_signatures(path: str | Path, params: MinHashParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(doc indices int64 (n,), signatures uint32 (n, num_perm)) of one signature file.

    With ``params``, raises ``ValueError`` when the file was written with other parameters.
    """
    path = Path(path)
    num_perm, n = _check_signatures(path, params)
    return _scan_signatures(path, num_perm, n, 0, num_perm)


def _scan_signatures(path: Path, num_perm: int, n: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    # (docs, values lo:hi) read in chunks, not memory-mapped: a band task then holds only its columns
    # (a mapping of the whole file would count every touched page against the task's memory)
    dtype = _sig_dtype(num_perm)
    docs = np.empty(n, dtype=np.int64)
    cols = np.empty((n, hi - lo), dtype=np.uint32)
    with open(path, "rb") as f:
        f.seek(_HEADER_SIZE)
        for start in range(0, n, _SCAN_RECORDS):
            rec = np.fromfile(f, dtype=dtype, count=min(_SCAN_RECORDS, n - start))
            docs[start : start + len(rec)] = rec["doc"]
            cols[start : start + len(rec)] = rec["sig"][:, lo:hi]
    return docs, cols


def band_groups(n_bands: int, n_groups: int) -> list[list[int]]:
    """``range(n_bands)`` in ``n_groups`` contiguous groups as even as possible (empty groups dropped)."""
    return [g.tolist() for g in np.array_split(np.arange(n_bands), max(1, n_groups)) if len(g)]


def _docs_digest(sorted_docs: np.ndarray) -> bytes:
    # ties bucket files to one set of documents, so files of two different runs are never mixed
    return hashlib.blake2b(sorted_docs.astype("<i8").tobytes(), digest_size=8).digest()


def _multi_buckets(keys: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Buckets of equal rows of ``keys`` holding >= 2 docs: (member docs, bucket sizes).

    ``docs`` ascends; members ascend within a bucket; buckets are ordered by their first doc, so the
    result depends only on the set of (key, doc) pairs.
    """
    n, r = keys.shape
    if n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # equal keys must be adjacent; any total order will do, a stable one keeps docs ascending
    void = np.ascontiguousarray(keys).view(np.dtype((np.void, 4 * r))).ravel()
    order = np.argsort(void, kind="stable")
    sk = keys[order]
    new = np.ones(n, dtype=bool)
    new[1:] = np.any(sk[1:] != sk[:-1], axis=1)
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, n))
    multi = sizes >= 2
    starts, sizes = starts[multi], sizes[multi]
    by_first = np.argsort(docs[order[starts]], kind="stable")
    starts, sizes = starts[by_first], sizes[by_first]
    # positions of every member, bucket after bucket
    offsets = np.cumsum(sizes) - sizes
    pos = np.repeat(starts - offsets, sizes) + np.arange(int(sizes.sum()))
    return docs[order[pos]].astype(np.int64), sizes.astype(np.int64)


def write_buckets(
    signature_paths: Sequence[str | Path],
    bands: Sequence[int],
    path: str | Path,
    params: MinHashParams,
    *,
    progress: bool = False,
) -> int:
    """For each band in ``bands``: the buckets of >= 2 documents over all signature files, to ``path``.

    One task per band group; the file does not depend on how documents were split into signature
    files. Returns the number of bucket members written (over all bands of the group).
    """
    path = Path(path)
    band_list = sorted({int(b) for b in bands})
    if len(band_list) != len(bands) or not band_list or band_list[0] < 0 or band_list[-1] >= params.bands:
        raise ValueError(
            f"bands must be distinct band numbers in [0, {params.bands}) for threshold={params.threshold} "
            f"num_perm={params.num_perm}, got {list(bands)}"
        )
    r = params.rows
    files = [(Path(sp), *_check_signatures(Path(sp), params)) for sp in signature_paths]
    docs = np.concatenate(
        [_scan_signatures(sp, num_perm, n, 0, 0)[0] for sp, num_perm, n in files] or [np.zeros(0, dtype=np.int64)]
    )
    order = np.argsort(docs, kind="stable")
    docs = docs[order]
    if len(docs) and (docs[0] < 0 or np.any(docs[1:] == docs[:-1])):
        bad = int(docs[0]) if docs[0] < 0 else int(docs[1:][docs[1:] == docs[:-1]][0])
        raise ValueError(
            f"document index {bad} is negative or appears in more than one signature entry of "
            f"{[str(p) for p in signature_paths]}; each document must be signed exactly once"
        )
    table, payload = [], []
    members = 0
    for band in tqdm(band_list, desc="minhash buckets", unit="band", disable=not progress):
        # one band at a time (re-reading the files) holds one band's values, not the group's
        parts = [_scan_signatures(sp, num_perm, n, band * r, (band + 1) * r)[1] for sp, num_perm, n in files]
        keys = np.concatenate(parts or [np.zeros((0, r), dtype=np.uint32)])[order]
        del parts
        mdocs, sizes = _multi_buckets(keys, docs)
        table.append(_BKT_BAND.pack(band, 0, len(sizes), len(mdocs)))
        payload += [mdocs.astype("<i8").tobytes(), sizes.astype("<i8").tobytes()]
        members += len(mdocs)
    header = _BKT_HEADER.pack(
        _BKT_MAGIC, params.num_perm, params.shingle, params.seed, float(params.threshold), params.bands,
        r, len(band_list), 0, len(docs), _docs_digest(docs),
    )
    tmp = tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(_pad(header))
        f.write(b"".join(table))
        for chunk in payload:
            f.write(chunk)
    commit(tmp, path)
    return members


def _read_buckets(path: Path) -> tuple[tuple, list[tuple[int, np.ndarray, np.ndarray]]]:
    header = _read_header(path, _BKT_MAGIC, _BKT_HEADER, "bucket")
    n_bands = header[7]
    out = []
    with open(path, "rb") as f:
        f.seek(_HEADER_SIZE)
        table = [_BKT_BAND.unpack(f.read(_BKT_BAND.size)) for _ in range(n_bands)]
        for band, _zero, n_buckets, n_members in table:
            mdocs = np.fromfile(f, dtype="<i8", count=n_members)
            sizes = np.fromfile(f, dtype="<i8", count=n_buckets)
            if len(mdocs) != n_members or len(sizes) != n_buckets or int(sizes.sum()) != n_members:
                raise ValueError(f"{path}: band {band} is truncated or inconsistent; rerun its bucket task")
            out.append((band, mdocs, sizes))
    return header, out


def keep_first_duplicates(member_docs: np.ndarray, bucket_ids: np.ndarray, n_buckets: int) -> np.ndarray:
    """The keep-first rule over bucket memberships: sorted docs that share a bucket with an earlier kept doc.

    Documents are decided in index order: a document is dropped when any of its buckets already
    holds a kept document, else it is kept and marks all its buckets. Checking "any kept member so
    far" per bucket (not the bucket's first member) is what makes a bucket whose first document was
    itself dropped still drop a later copy of a kept one.
    """
    order = np.lexsort((bucket_ids, member_docs))
    d = member_docs[order]
    b = bucket_ids[order].tolist()
    if len(d) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], d[1:] != d[:-1])))
    ends = np.append(starts[1:], len(d)).tolist()
    has_kept = bytearray(n_buckets)
    dropped = []
    for doc, s, e in zip(d[starts].tolist(), starts.tolist(), ends):
        mine = b[s:e]
        for x in mine:  # a plain loop: twice as fast as any() over a generator here
            if has_kept[x]:
                dropped.append(doc)
                break
        else:
            for x in mine:
                has_kept[x] = 1
    return np.asarray(dropped, dtype=np.int64)


def find_duplicates(bucket_paths: Sequence[str | Path], path: str | Path, *, progress: bool = False) -> int:
    """Apply the keep-first rule over the buckets of all bands; write the sorted doc indices to drop.

    ``bucket_paths`` must cover every band exactly once and come from the same documents and
    parameters. Returns the number of documents to drop.
    """
    path = Path(path)
    if not bucket_paths:
        raise ValueError("find_duplicates needs the bucket files of all band groups, got none")
    ref = None
    seen: dict[int, Path] = {}
    docs_parts, id_parts = [], []
    n_buckets = 0
    for bp in tqdm([Path(p) for p in bucket_paths], desc="minhash clusters", unit="file", disable=not progress):
        header, bands = _read_buckets(bp)
        run = header[1:7] + header[9:11]  # everything but magic, n_bands and the padding
        if ref is None:
            ref, ref_path = run, bp
        elif run != ref:
            raise ValueError(
                f"{bp} and {ref_path} come from different documents or parameters "
                "(num_perm, shingle, seed, threshold, bands, rows, doc count or doc set differ); "
                "rerun the bucket stage for all band groups"
            )
        for band, mdocs, sizes in bands:
            if band in seen:
                raise ValueError(f"band {band} is in both {seen[band]} and {bp}; pass each band group once")
            seen[band] = bp
            docs_parts.append(mdocs)
            id_parts.append(np.repeat(np.arange(n_buckets, n_buckets + len(sizes), dtype=np.int64), sizes))
            n_buckets += len(sizes)
    bands_total, n_docs, digest = ref[4], ref[6], ref[7]
    missing = sorted(set(range(bands_total)) - set(seen))
    if missing:
        raise ValueError(f"no bucket file covers band(s) {missing} of {bands_total}; run their bucket task first")
    member_docs = np.concatenate(docs_parts) if docs_parts else np.zeros(0, dtype=np.int64)
    bucket_ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)
    dups = keep_first_duplicates(member_docs, bucket_ids, n_buckets)
    tmp = tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(_pad(_DUP_HEADER.pack(_DUP_MAGIC, len(dups), n_docs, digest)))
        f.write(dups.astype("<i8").tobytes())
    commit(tmp, path)
    return len(dups)


def read_duplicate_array(path: str | Path) -> np.ndarray:
    """The sorted int64 indices of the documents to drop (compact; use for large corpora)."""
    path = Path(path)
    _magic, n, _n_docs, _digest = _read_header(path, _DUP_MAGIC, _DUP_HEADER, "duplicates")
    dups = np.fromfile(path, dtype="<i8", offset=_HEADER_SIZE)
    if len(dups) != n:
        raise ValueError(f"{path}: {len(dups)} indices, header says {n}; rerun find_duplicates")
    return dups.astype(np.int64)


def read_duplicates(path: str | Path) -> set[int]:
    """The indices of the documents to drop, as a set for ``index in dups`` checks while filtering."""
    return set(read_duplicate_array(path).tolist())
