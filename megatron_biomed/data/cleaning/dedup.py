"""Duplicate detection: exact (normalized-text hash) and near-duplicate (MinHash LSH).

Both keep the first record they see, so the caller decides precedence by the order it feeds
records (the pipeline feeds them in file-name order).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used for duplicate checks."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", text).strip()


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
    """MinHash LSH over word shingles; ``seen_before`` is True when a similar text was added."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, seed: int = 1):
        from datasketch import MinHash, MinHashLSH  # only needed when near-dedup is switched on

        self._minhash = MinHash
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.num_perm = num_perm
        self.shingle = shingle
        self.seed = seed
        self._n = 0

    def _signature(self, text: str):
        words = normalize_text(text).split()
        k = self.shingle
        grams = {" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}
        m = self._minhash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch([g.encode("utf-8") for g in grams])
        return m

    def seen_before(self, text: str) -> bool:
        sig = self._signature(text)
        if self._lsh.query(sig):
            return True
        self._lsh.insert(str(self._n), sig)
        self._n += 1
        return False
