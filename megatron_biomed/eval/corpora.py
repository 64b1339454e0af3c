"""Held-out text for perplexity: Megatron .bin/.idx prefixes (token ids) or raw JSONL / text files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from megatron.core.datasets.indexed_dataset import IndexedDataset

from megatron_biomed.data.errors import DataError
from megatron_biomed.data.preflight import check_prefix
from megatron_biomed.errors import BiomedError


class CorpusError(BiomedError, ValueError):
    """A corpus is missing, empty, not UTF-8, or has a bad record (the message names the file and line)."""


def _open_text(path: Path):
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: not UTF-8 ({e.reason} at byte {e.start})") from e


def load_documents(spec: str, json_key: str = "text", limit: int | None = None, vocab_size: int | None = None) -> list:
    """Documents of ``spec``: a .bin/.idx prefix gives token-id lists (checked first by
    :mod:`megatron_biomed.data.preflight`, token ids against ``vocab_size``); a .jsonl file gives the
    ``json_key`` field of each line; any other file is one document."""
    p = Path(spec)
    if Path(spec + ".bin").is_file() and Path(spec + ".idx").is_file():
        try:
            check_prefix(spec, vocab_size=vocab_size, cache_dir=None, field="--corpus", index_cache_used=False)
        except DataError as e:
            raise CorpusError(str(e)) from e

        ds = IndexedDataset(spec, mmap=True)
        n = len(ds) if limit is None else min(limit, len(ds))
        docs = [ds[i].tolist() for i in range(n)]
    elif p.is_file():
        text = _open_text(p)
        if ".jsonl" in p.name or ".json" in p.name:
            docs = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusError(f"{p}:{lineno}: invalid JSON ({e.msg})") from e
                if not isinstance(row, dict) or not isinstance(row.get(json_key), str):
                    raise CorpusError(f"{p}:{lineno}: no string field '{json_key}'")
                docs.append(row[json_key])
                if limit is not None and len(docs) >= limit:
                    break
        else:
            docs = [text]
    else:
        raise CorpusError(f"{spec}: neither a file nor a .bin/.idx prefix")
    if not any(len(d) for d in docs):
        raise CorpusError(f"{spec}: empty corpus (no text to score)")
    return docs
