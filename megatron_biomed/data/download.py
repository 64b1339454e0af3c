"""Download PubMed baseline/update files and PMC open-access bulk packages from NCBI.

Lists the files of each source from its HTTP directory index, fetches them with a thread pool,
and checks each one against the ``<name>.md5`` NCBI publishes beside it (``MD5(name)= hex``).
A file is written to ``<name>.part`` and renamed only after its checksum matched; then the
checksum is stored beside it as ``<name>.md5``, which is how a rerun knows the file is verified
and skips it. Failed attempts (network errors, checksum mismatches) are retried with backoff.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tqdm import tqdm

DEFAULT_BASE_URL = "https://ftp.ncbi.nlm.nih.gov/"
USER_AGENT = "megatron-biomed-downloader/0.1"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """A directory on the NCBI server and the files to take from it."""

    path: str  # relative to the base URL, ends with "/"
    pattern: str  # regular expression the file name must match
    md5_required: bool  # PubMed publishes .md5 files; PMC bulk packages do not


SOURCES: dict[str, Source] = {
    "pubmed-baseline": Source("pubmed/baseline/", r"^pubmed\d+n\d+\.xml\.gz$", True),
    "pubmed-updates": Source("pubmed/updatefiles/", r"^pubmed\d+n\d+\.xml\.gz$", True),
    # PMC Open Access bulk XML packages, split by licence: oa_comm allows commercial use
    "pmc-oa-comm": Source("pub/pmc/oa_bulk/oa_comm/xml/", r"\.tar\.gz$", False),
    "pmc-oa-noncomm": Source("pub/pmc/oa_bulk/oa_noncomm/xml/", r"\.tar\.gz$", False),
    "pmc-oa-other": Source("pub/pmc/oa_bulk/oa_other/xml/", r"\.tar\.gz$", False),
}


@dataclass(frozen=True)
class DownloadConfig:
    output_dir: Path
    base_url: str = DEFAULT_BASE_URL
    workers: int = 4
    retries: int = 3  # extra attempts after the first, per file
    backoff_s: float = 5.0  # sleep before retry k is backoff_s * k
    timeout_s: float = 60.0
    limit: int | None = None  # take only the first N files of each source (trying things out)
    include: str | None = None  # extra regular expression on file names
    verify_existing: bool = False  # re-hash files a previous run verified instead of trusting them
    progress: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"DownloadConfig.workers must be >= 1, got {self.workers}")
        if self.retries < 0:
            raise ValueError(f"DownloadConfig.retries must be >= 0, got {self.retries}")
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError(f"DownloadConfig.base_url must be an http(s) URL, got {self.base_url!r}")


@dataclass
class FileResult:
    name: str
    status: str  # "downloaded", "skipped" (verified earlier), or "failed"
    attempts: int = 0
    bytes: int = 0
    error: str | None = None
    verified: bool = False  # checked against the server's .md5 (False when it publishes none)


@dataclass
class DownloadReport:
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def format(self) -> str:
        lines = [
            (
                f"files: {len(self.results)}  downloaded: {self.count('downloaded')}  "
                f"skipped (verified before): {self.count('skipped')}  failed: {self.count('failed')}"
            )
        ]
        lines += [f"  failed {r.name} after {r.attempts} attempt(s): {r.error}" for r in self.failed]
        unverified = [r.name for r in self.results if r.status == "downloaded" and not r.verified]
        if unverified:
            lines.append(
                f"  {len(unverified)} file(s) had no .md5 on the server and were not verified "
                "(gzip's own CRC is still checked when they are read)"
            )
        return "\n".join(lines)


class ChecksumError(Exception):
    pass


def _open(url: str, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(req, timeout=timeout)


def fetch_bytes(url: str, timeout: float) -> bytes:
    with _open(url, timeout) as resp:
        return resp.read()


_HREF = re.compile(r"""href\s*=\s*["']([^"'#?]+)["']""", re.IGNORECASE)


def parse_index(html: str, pattern: str) -> list[str]:
    """File names linked from an HTTP directory listing that match ``pattern``, sorted."""
    rx = re.compile(pattern)
    names = set()
    for href in _HREF.findall(html):
        name = unescape(href).rstrip("/").rsplit("/", 1)[-1]
        if name and not href.endswith("/") and rx.search(name):
            names.add(name)
    return sorted(names)


_MD5_NCBI = re.compile(r"MD5\s*\((?P<name>[^)]+)\)\s*=\s*(?P<hex>[0-9a-fA-F]{32})")
_MD5_SUM = re.compile(r"^(?P<hex>[0-9a-fA-F]{32})\s+\*?(?P<name>\S+)", re.MULTILINE)


def parse_md5(text: str, name: str) -> str:
    """The checksum for ``name`` from an ``.md5`` file (NCBI ``MD5(name)= hex`` or md5sum format)."""
    for rx in (_MD5_NCBI, _MD5_SUM):
        m = rx.search(text)
        if m:
            listed = m.group("name").strip()
            if Path(listed).name != name:
                raise ChecksumError(f"{name}.md5 is for {listed!r}, not {name!r}")
            return m.group("hex").lower()
    raise ChecksumError(f"{name}.md5 has no checksum in the 'MD5({name})= <hex>' form: {text[:80]!r}")


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _remote_md5(url: str, name: str, cfg: DownloadConfig, required: bool) -> str | None:
    try:
        return parse_md5(fetch_bytes(url + ".md5", cfg.timeout_s).decode("utf-8", "replace"), name)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        if required:
            raise ChecksumError(f"the server has no {name}.md5 to verify {name} against (HTTP 404)") from e
        return None


def _stream(url: str, part: Path, cfg: DownloadConfig, bar: tqdm | None) -> tuple[str, int]:
    h = hashlib.md5()
    n = 0
    with _open(url, cfg.timeout_s) as resp, open(part, "wb") as out:
        for chunk in iter(lambda: resp.read(_CHUNK), b""):
            out.write(chunk)
            h.update(chunk)
            n += len(chunk)
            if bar is not None:
                bar.set_postfix_str(f"{n / 2**20:.0f} MiB {part.name[:-5]}", refresh=False)
    return h.hexdigest(), n


def download_file(
    dir_url: str, name: str, cfg: DownloadConfig, md5_required: bool, bar: tqdm | None = None
) -> FileResult:
    """Fetch one file into ``cfg.output_dir`` unless a verified copy is already there."""
    url = urljoin(dir_url, name)
    final = Path(cfg.output_dir) / name
    marker = final.with_name(name + ".md5")
    part = final.with_name(name + ".part")
    result = FileResult(name, "failed")
    expected: str | None = None
    for attempt in range(cfg.retries + 1):
        if attempt:
            time.sleep(cfg.backoff_s * attempt)
        result.attempts = attempt + 1
        try:
            if expected is None:
                expected = _remote_md5(url, name, cfg, md5_required)
                # nothing to compare against: trust a finished copy, else download without a check
                if expected is None and attempt == 0 and final.exists() and marker.exists():
                    result.status = "skipped"
                    return result
                if expected is not None and final.exists() and marker.exists():
                    have = parse_md5(marker.read_text(), name)
                    if have == expected and (not cfg.verify_existing or md5_of(final) == expected):
                        result.status, result.verified = "skipped", True
                        return result
            digest, size = _stream(url, part, cfg, bar)
            if expected is not None and digest != expected:
                raise ChecksumError(f"checksum mismatch: got {digest}, NCBI lists {expected}")
            os.replace(part, final)
            marker.write_text(f"MD5({name})= {digest}\n")
            result.status, result.bytes, result.error = "downloaded", size, None
            result.verified = expected is not None
            return result
        except (OSError, urllib.error.URLError, ChecksumError, TimeoutError) as e:
            part.unlink(missing_ok=True)
            result.error = str(e)
    return result


def list_source(source: Source, cfg: DownloadConfig) -> tuple[str, list[str]]:
    """(directory URL, file names to fetch) for one source."""
    dir_url = urljoin(cfg.base_url if cfg.base_url.endswith("/") else cfg.base_url + "/", source.path)
    last: Exception | None = None
    for attempt in range(cfg.retries + 1):
        if attempt:
            time.sleep(cfg.backoff_s * attempt)
        try:
            html = fetch_bytes(dir_url, cfg.timeout_s).decode("utf-8", "replace")
            break
        except (OSError, urllib.error.URLError) as e:
            last = e
    else:
        raise ConnectionError(f"cannot list {dir_url}: {last}")
    names = parse_index(html, source.pattern)
    if cfg.include:
        names = [n for n in names if re.search(cfg.include, n)]
    if cfg.limit is not None:
        names = names[: cfg.limit]
    return dir_url, names


def download_source(source: Source, cfg: DownloadConfig, desc: str = "download") -> DownloadReport:
    """Fetch every listed file of ``source`` in parallel; never raises for a single file."""
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    dir_url, names = list_source(source, cfg)
    report = DownloadReport()
    bar = tqdm(total=len(names), desc=desc, unit="file", disable=not cfg.progress)
    try:
        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            futures = [pool.submit(download_file, dir_url, n, cfg, source.md5_required, bar) for n in names]
            for fut in as_completed(futures):
                report.results.append(fut.result())
                bar.update(1)
    finally:
        bar.close()
    report.results.sort(key=lambda r: r.name)
    return report
