"""STAND-IN written by the arrays helper (issue 19) against the API the brief fixes for the minhash helper's module
of the same name; the lead merges the real one over this file. It exists so that the job-array pipeline
(``megatron_biomed/data/jobs/``) runs and is tested before the real module lands. Simple on purpose: signatures
as datasketch computes them for :class:`~megatron_biomed.data.cleaning.dedup.NearDuplicateIndex`, datasketch's
band layout, and the keep-first rule applied in one pass over the sorted bucket entries.

Semantics (the brief): doc i is dropped iff it shares a band bucket with an earlier doc j < i that is itself kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megatron_biomed.data.cleaning.dedup import normalize_text
from megatron_biomed.data.sharding import commit, tmp_path


@dataclass(frozen=True)
class MinHashParams:
    threshold: float = 0.8
    num_perm: int = 128
    shingle: int = 5
    seed: int = 1

    @classmethod
    def from_cleaning(cls, cfg) -> MinHashParams:
        return cls(cfg.near_dup_threshold, cfg.near_dup_num_perm, cfg.near_dup_shingle)

    def _lsh(self):
        from datasketch import MinHashLSH  # optional: only near dedup needs it (as dedup.NearDuplicateIndex)

        return MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)

    @property
    def bands(self) -> int:  # datasketch MinHashLSH's b for (threshold, num_perm), as NearDuplicateIndex uses
        return self._lsh().b

    @property
    def rows(self) -> int:
        return self._lsh().r


def _signature(text: str, params: MinHashParams) -> np.ndarray:
    from datasketch import MinHash  # optional: only near dedup needs it (as dedup.NearDuplicateIndex)

    words = normalize_text(text).split()
    k = params.shingle
    grams = {" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}
    m = MinHash(num_perm=params.num_perm, seed=params.seed)
    m.update_batch([g.encode("utf-8") for g in grams])
    return m.hashvalues.astype(np.uint64)


def _save(path, **arrays) -> None:
    path = Path(path)
    tmp = tmp_path(path)
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    commit(tmp, path)


def write_signatures(docs: Iterable[tuple[int, str]], path, params: MinHashParams) -> int:
    idx, sigs = [], []
    for i, text in docs:
        idx.append(i)
        sigs.append(_signature(text, params))
    matrix = np.stack(sigs) if sigs else np.zeros((0, params.num_perm), dtype=np.uint64)
    _save(path, doc=np.asarray(idx, dtype=np.int64), sig=matrix)
    return len(idx)


def write_buckets(signature_paths: Sequence[Path], bands: Sequence[int], path, params: MinHashParams) -> int:
    r = params.rows
    band_col, key_col, doc_col = [], [], []
    for sp in signature_paths:
        with np.load(sp) as z:
            docs, sig = z["doc"], z["sig"]
        for b in bands:
            for d, row in zip(docs, sig[:, b * r : (b + 1) * r]):
                band_col.append(b)
                key_col.append(int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") >> 1)
                doc_col.append(int(d))
    _save(path, band=np.asarray(band_col, dtype=np.int64), key=np.asarray(key_col, dtype=np.int64),
          doc=np.asarray(doc_col, dtype=np.int64))
    return len(doc_col)


def find_duplicates(bucket_paths: Sequence[Path], path) -> int:
    band, key, doc = [], [], []
    for bp in bucket_paths:
        with np.load(bp) as z:
            band.append(z["band"])
            key.append(z["key"])
            doc.append(z["doc"])
    band_a = np.concatenate(band) if band else np.zeros(0, np.int64)
    key_a = np.concatenate(key) if key else np.zeros(0, np.int64)
    doc_a = np.concatenate(doc) if doc else np.zeros(0, np.int64)
    buckets: dict[tuple[int, int], int] = {}
    bucket_of = np.empty(doc_a.size, dtype=np.int64)
    for i, (b, k) in enumerate(zip(band_a.tolist(), key_a.tolist())):
        bucket_of[i] = buckets.setdefault((b, k), len(buckets))
    order = np.argsort(doc_a, kind="stable")
    has_kept = np.zeros(len(buckets), dtype=bool)
    dropped: list[int] = []
    i = 0
    while i < order.size:
        j = i
        d = doc_a[order[i]]
        while j < order.size and doc_a[order[j]] == d:
            j += 1
        mine = bucket_of[order[i:j]]
        if has_kept[mine].any():
            dropped.append(int(d))
        else:
            has_kept[mine] = True
        i = j
    _save(path, drop=np.asarray(dropped, dtype=np.int64))
    return len(dropped)


def read_duplicates(path) -> set[int]:
    with np.load(path) as z:
        return set(z["drop"].tolist())
