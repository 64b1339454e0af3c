"""Duplicate detection: exact (normalized-text hash) and near-duplicate (MinHash LSH).

Both keep the first record they see, so the caller decides precedence by the order it feeds
records (the pipeline feeds them in file-name order).
"""

from __future__ import annotations

import hashlib

from megatron_biomed.data.cleaning.minhash import MinHashParams, signatures
from megatron_biomed.data.cleaning.textnorm import normalize_text


def text_hash(text: str) -> int:
    """64-bit hash of the normalized text (collisions are negligible below billions of records)."""
    digest = hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class ExactDeduper:
    """Remembers normalized-text hashes; ``seen_before`` is True for the second copy onwards."""

    def __init__(self) -> None:
        self._hashes: set[int] = set()

    def seen_before(self, text: str) -> bool:
        h = text_hash(text)
        if h in self._hashes:
            return True
        self._hashes.add(h)
        return False


class NearDuplicateIndex:
    """MinHash LSH over word shingles; ``seen_before`` is True when a similar text was added.

    Keep-first: a text is reported (and not added) when it shares a band with an added text. The
    signature, shingles and band layout are ``minhash.py``'s, which the staged dedup (``write_signatures``
    -> ``write_buckets`` -> ``find_duplicates``) shares, so both drop the same documents.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, seed: int = 1):
        from datasketch import MinHash, MinHashLSH  # only needed when near-dedup is switched on

        self.params = MinHashParams(threshold, num_perm, shingle, seed)
        self._minhash = MinHash
        self._permutations = self.params.permutations()
        # datasketch picks the band layout itself here; MinHashParams.bands/rows reproduce it for the stages
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.num_perm = num_perm
        self.shingle = shingle
        self.seed = seed
        self._n = 0

    def _signature(self, text: str):
        # datasketch 2.0.0's default scheme, named so that a later default cannot change the result
        return self._minhash(
            seed=self.seed,
            hashvalues=signatures([text], self.params)[0],
            permutations=self._permutations,
            scheme="affine32",
        )

    def seen_before(self, text: str) -> bool:
        sig = self._signature(text)
        if self._lsh.query(sig):
            return True
        self._lsh.insert(str(self._n), sig)
        self._n += 1
        return False
