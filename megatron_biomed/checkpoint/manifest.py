"""A checkpoint's manifest: every file's name, size and checksum, written last, checked on load.

``manifest.json`` lists each file of a checkpoint directory (shards, ``.metadata``, ``metadata.json``,
``run_config.yaml``) with its size in bytes and a fast checksum: xxh64 when the ``xxhash`` package is installed,
else zlib's crc32 (about 1 GB/s per core). Ranks checksum and fsync the files they wrote (``__<rank>_*.distcp``)
and rank 0 the rest, so the cost is spread over the job. On load, sizes are always compared; checksums unless
the caller skips them (``checkpoint.verify_checksums=false`` for huge checkpoints on trusted storage).

The manifest carries a crc32 of its own contents (version 2), so that a damaged byte in it is reported as
damage to ``manifest.json`` rather than as a mismatch of the file it describes; and a file of the directory
that the manifest does not list is refused (the loader would read a ``common.pt`` or shard dropped in
after the save, unverified).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Iterable, Optional

from megatron_biomed.errors import BiomedError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2  # 1: without its own checksum (still read)
_CHUNK = 1 << 22

try:  # pragma: no cover - depends on the environment
    import xxhash

    ALGORITHM = "xxh64"
except ImportError:  # pragma: no cover
    xxhash = None
    ALGORITHM = "crc32"


class ManifestError(BiomedError, RuntimeError):
    """A checkpoint's files do not match its manifest (or the manifest is missing or unreadable)."""


def checksum(path: Path, algorithm: str = ALGORITHM) -> str:
    """Hex checksum of a file's bytes."""
    with open(path, "rb") as f:
        if algorithm == "xxh64":
            if xxhash is None:
                raise ManifestError(f"{path}: the manifest uses xxh64 but the xxhash package is not installed")
            h = xxhash.xxh64()
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            return h.hexdigest()
        if algorithm == "crc32":
            c = 0
            while chunk := f.read(_CHUNK):
                c = zlib.crc32(chunk, c)
            return f"{c:08x}"
    raise ManifestError(f"{path}: unknown checksum algorithm {algorithm!r}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new files, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe(directory: Path, names: Iterable[str]) -> dict[str, dict]:
    """fsync each named file of ``directory`` and return {name: {"size", "checksum"}}."""
    out = {}
    for name in names:
        path = directory / name
        fsync_file(path)
        out[name] = {"size": path.stat().st_size, "checksum": checksum(path)}
    return out


def rank_files(directory: Path, rank: int) -> list[str]:
    """The shard files a rank wrote (torch DCP names them ``__<rank>_<n>.distcp``)."""
    return sorted(p.name for p in directory.glob(f"__{rank}_*.distcp"))


def shared_files(directory: Path) -> list[str]:
    """Files of a checkpoint that are not a rank's shards (rank 0 describes them)."""
    return sorted(
        p.name for p in directory.iterdir() if p.is_file() and not p.name.endswith(".distcp") and p.name != MANIFEST
    )


def _own_checksum(body: dict) -> str:
    """crc32 of a manifest's version, algorithm and files, in a canonical JSON encoding."""
    canonical = {k: body[k] for k in ("version", "algorithm", "files")}
    return f"{zlib.crc32(json.dumps(canonical, sort_keys=True, separators=(',', ':')).encode()):08x}"


def write(directory: Path, files: dict[str, dict]) -> Path:
    """Write ``manifest.json`` (via a temporary file, fsynced) and fsync the directory."""
    path = directory / MANIFEST
    tmp = directory / (MANIFEST + ".tmp")
    body = {"version": MANIFEST_VERSION, "algorithm": ALGORITHM, "files": dict(sorted(files.items()))}
    body["checksum"] = _own_checksum(body)
    with open(tmp, "w") as f:
        json.dump(body, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)
    return path


def read(directory: Path) -> Optional[dict]:
    """The manifest of a checkpoint directory, or None when it has none."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_bytes())
        version, files, algorithm = body["version"], body["files"], body["algorithm"]
        if version not in (1, MANIFEST_VERSION):
            raise ValueError(f"unknown manifest version {version!r}")
        if version >= 2 and body["checksum"] != _own_checksum(body):
            raise ValueError(f"its own checksum is {_own_checksum(body)}, it says {body['checksum']}: corrupted")
        for name, entry in files.items():
            if not isinstance(entry, dict) or not {"size", "checksum"} <= set(entry):
                raise ValueError(f"entry {name!r} lacks a size or checksum")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ManifestError(f"{path}: unreadable manifest ({e}); the checkpoint cannot be verified") from None
    return {"algorithm": algorithm, "files": files}


def check_listed(directory: Path, body: dict) -> None:
    """Raise ManifestError naming a file of ``directory`` that the manifest does not list (added after the
    save: the loader could read it, e.g. a legacy ``common.pt``, without its being verified)."""
    for p in sorted(directory.iterdir()):
        if p.name != MANIFEST and p.name not in body["files"] and not p.is_dir():
            raise ManifestError(
                f"{p}: not listed in {directory / MANIFEST}, so it was added after the save; remove it (or "
                "re-save the checkpoint) to load this checkpoint"
            )


def verify(directory: Path, body: dict, checksums: bool = True, names: Optional[Iterable[str]] = None) -> None:
    """Check files (all of the manifest's, or ``names``) against it: present, the same size, the same checksum.

    Raises ManifestError naming the first file that differs and how."""
    files = body["files"]
    for name in files if names is None else names:
        entry = files[name]
        path = directory / name
        if not path.is_file():
            raise ManifestError(f"{path}: listed in {directory / MANIFEST} but missing")
        size = path.stat().st_size
        if size != entry["size"]:
            raise ManifestError(f"{path}: {size} bytes, the manifest says {entry['size']} (truncated or overwritten)")
        if checksums:
            got = checksum(path, body["algorithm"])
            if got != entry["checksum"]:
                raise ManifestError(
                    f"{path}: {body['algorithm']} checksum {got}, the manifest says {entry['checksum']} (corrupted)"
                )
