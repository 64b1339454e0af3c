"""The normalized text form that duplicate checks compare (exact hashes and MinHash shingles)."""

from __future__ import annotations

import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used for duplicate checks."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", text).strip()
