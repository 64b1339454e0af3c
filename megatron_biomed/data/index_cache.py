"""Which data megatron-core's index cache was built from: a sidecar file beside its cache files.

megatron-core's GPTDataset caches its document, sample and shuffle indices as ``.npy`` files named by an MD5
of a description of the dataset (``MegatronDataset.unique_description``: class, prefix path, split, number of
samples, sequence length, seed, tokenizer). Nothing of the data itself is in the description, and a cache hit
is decided by ``os.path.isfile`` alone (megatron/core/datasets/gpt_dataset.py,
``_build_document_sample_shuffle_indices``). So when the ``.bin``/``.idx`` at a prefix are rebuilt, the old
indices are used as they are: samples silently taken from the wrong documents, or an index error mid-run.

The cached indices are a function of the ``.idx`` only (sequence lengths and document boundaries), so we record
a CRC32 of each prefix's ``.idx`` in ``megatron_biomed_sources.json`` in the cache directory, and refuse a
prefix whose ``.idx`` no longer matches while cache files built for it are there. The file also memoises the
token-id range of each ``.bin`` (keyed by its size, mtime and inode), so the vocabulary check of
:mod:`megatron_biomed.data.preflight` scans each ``.bin`` once, not at every launch.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

SIDECAR = "megatron_biomed_sources.json"
_CRC_CHUNK = 1 << 24


def cache_root(prefix: str, cache_dir: Optional[str]) -> Path:
    """The directory megatron-core's GPTDataset keeps ``prefix``'s indices in (its default when no
    ``data.cache_dir`` is set: ``<prefix>/cache/GPTDataset_indices``)."""
    return Path(cache_dir) if cache_dir else Path(prefix) / "cache" / "GPTDataset_indices"


def file_stat(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def crc32_of(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(_CRC_CHUNK):
            crc = zlib.crc32(block, crc)
    return crc


def cached_index_files(root: Path, prefix: str) -> list[Path]:
    """megatron-core's cache files in ``root`` that were built for ``prefix`` (found through the
    ``*-description.txt`` megatron-core writes beside each set of ``.npy`` files)."""
    if not root.is_dir():
        return []
    want = os.path.abspath(prefix)
    out: list[Path] = []
    for desc in sorted(root.glob("*-description.txt")):
        try:
            path = json.loads(desc.read_text()).get("dataset_path")
        except (OSError, ValueError, AttributeError):
            continue  # being written by another rank, or not megatron-core's
        if path and os.path.abspath(path) == want:
            base = desc.name[: -len("description.txt")]
            out += sorted(p for p in root.iterdir() if p.name.startswith(base))
    return out


class SourceRecords:
    """The sidecar of one cache directory: prefix (absolute) -> what its files were when last checked."""

    def __init__(self, root: Path):
        self.path = root / SIDECAR
        self.records: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.records = json.loads(self.path.read_text()).get("prefixes", {})
            except (OSError, ValueError) as e:
                log.warning("%s: unreadable (%s); treating the index cache as unverified", self.path, e)

    def get(self, prefix: str) -> Optional[dict]:
        return self.records.get(os.path.abspath(prefix))

    def put(self, prefix: str, record: dict) -> None:
        """Record ``prefix`` and write the file atomically (ranks of one job write the same content)."""
        self.records[os.path.abspath(prefix)] = record
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": 1, "prefixes": self.records}, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only shared cache: the checks still ran, only the memo is lost
            log.warning("%s: cannot record the data the index cache is built from (%s)", self.path, e)
            tmp.unlink(missing_ok=True)


def index_crc(prefix: str, record: Optional[dict]) -> int:
    """CRC32 of ``<prefix>.idx``, reused from ``record`` when the file's size, mtime and inode are unchanged."""
    idx = prefix + ".idx"
    if record and record.get("idx", {}).get("stat") == file_stat(idx):
        return int(record["idx"]["crc32"])
    return crc32_of(idx)


def stale_cache_message(prefix: str, root: Path, record: Optional[dict], crc: int) -> Optional[str]:
    """Why megatron-core's cached indices for ``prefix`` in ``root`` must not be used, or None if they may.

    Indices recorded with another ``.idx`` CRC are stale; indices with no record (built before this check
    existed, or by another tool) cannot be verified and are only warned about."""
    files = cached_index_files(root, prefix)
    if not files:
        return None
    if record is None:
        log.warning(
            "%s: index cache files for %s have no record of the data they were built from; if that data was "
            "rebuilt since, delete them: %s", root, prefix, ", ".join(p.name for p in files))  # fmt: skip
        return None
    if int(record["idx"]["crc32"]) == crc:
        return None
    listing = "\n  ".join(str(p) for p in files)
    return (
        f"{prefix}.idx changed since megatron-core's index cache in {root} was built from it (CRC32 "
        f"{int(record['idx']['crc32']):08x}, now {crc:08x}); megatron-core would reuse the old sample indices "
        f"(its cache key does not include the data). Delete these files so they are rebuilt, or point "
        f"data.cache_dir at an empty directory:\n  {listing}"
    )
