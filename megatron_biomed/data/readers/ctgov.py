"""ClinicalTrials.gov reader: study records to training text.

Inputs (``--format ctgov``, or ``auto``):

- legacy per-study XML (``NCT*.xml``, ``<clinical_study>`` root, https://clinicaltrials.gov/ct2/html/images/info/public.xsd),
  one file, a directory of them, or the ``AllPublicXML.zip`` bulk file;
- API v2 JSON (ClinicalTrials.gov REST API, OpenAPI spec ``ctg-oas-v2.yaml`` 2.0.5, https://clinicaltrials.gov/api/oas/v2,
  schemas ``Study``/``PagedStudies``): a single study object (``GET /studies/{nctId}``), a page
  ``{"studies": [...], "nextPageToken": ...}`` (``GET /studies``) or a list of studies in a ``.json`` file, NDJSON
  (one study per line) in a ``.jsonl``/``.ndjson`` file, and the ``ctg-studies.json.zip`` bulk file (one study
  per member); each plain or gzip-compressed (except inside a zip).

Memory: XML files and NDJSON lines are streamed; a ``.json`` file is read whole (one API page is at most
1,000 studies, a few tens of MB) and its studies decoded one at a time; a zip is read member by member (the
archive's central directory, one small entry per member, is held while reading).

Both formats are read into one ``Study`` and made into text by one function (``ctgov_study.py``, where the
layout is described); legacy XML is ``ctgov_xml.py``, API v2 JSON ``ctgov_json.py``; this module holds the bulk zip and
the seam.

Versions: the identity is the NCT number (:func:`nct_key`) and copies rank by their last-update date
(``record_rank`` YYYYMMDD: legacy ``<last_update_posted>``, older files ``<lastchanged_date>``; v2
``statusModule.lastUpdatePostDateStruct.date``), so the latest version is kept whatever order files are read in;
an older copy is counted as ``superseded_version``.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from megatron_biomed.data.readers.ctgov_json import MAX_LINE, iter_ctgov_json, iter_ctgov_ndjson
from megatron_biomed.data.readers.ctgov_study import ISO_DATE, CtgovRecord
from megatron_biomed.data.readers.ctgov_xml import CTGOV_ROOTS, iter_ctgov_xml
from megatron_biomed.data.readers.medline import BadRecord
from megatron_biomed.data.readers.registry import ReaderOptions, SourceReader
from megatron_biomed.data.readers.xmlstream import BadInputError, open_binary

JSON_SUFFIXES = (".json", ".json.gz")
NDJSON_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
ZIP_SUFFIXES = (".zip",)
_NCT_MEMBER = re.compile(r"(?:^|/)NCT\d{8}\.(?:xml|json)$", re.IGNORECASE)
_SNIFF_BYTES = 1 << 20


# ------------------------------------------------------------------------------------------------ bulk zip


def iter_ctgov_zip(path: str | Path) -> Iterator[CtgovRecord | BadRecord]:
    """Stream ``AllPublicXML.zip`` (``NCT*.xml`` members) or ``ctg-studies.json.zip`` (``NCT*.json``), member by
    member in archive order. A broken member is a :class:`BadRecord` naming it (``--skip-bad`` counts it and
    goes on with the rest of the archive); an unreadable archive raises :class:`BadInputError`."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise BadInputError(path, 0, f"not a zip archive, or a truncated one ({e}); re-download it") from e
    with archive:
        for info in archive.infolist():
            name = info.filename
            low = name.lower()
            if info.is_dir() or not low.endswith((".xml", ".json")):
                continue
            where = f"{path}::{name}"
            try:
                data = archive.read(info)
                if low.endswith(".xml"):
                    items = list(iter_ctgov_xml(where, data=data))
                else:
                    items = list(iter_ctgov_json(where, data=data))
            except BadInputError as e:
                yield BadRecord(e.line, f"member {name}: {e.problem}")
                continue
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                yield BadRecord(0, f"member {name}: corrupt in the archive ({e})")
                continue
            for item in items:
                yield BadRecord(item.line, f"member {name}: {item.problem}") if isinstance(item, BadRecord) else item


# ------------------------------------------------------------------------------------------------ the seam


def nct_key(nct_id: str) -> int:
    """A study's identity for reconcile: a stable 63-bit hash of its NCT number (a hash, not the number itself,
    so it cannot collide with the small integers other readers use as keys, e.g. MEDLINE's PMID << 8)."""
    digest = hashlib.blake2b(f"ctgov:{nct_id.strip().upper()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _record_key(record: dict) -> int | None:
    nct = record.get("nct_id")
    return nct_key(nct) if nct else None


def _record_rank(record: dict) -> int:
    """The last-update date as YYYYMMDD (YYYYMM00 when only the month is known; 0 when unknown)."""
    m = ISO_DATE.match(record.get("last_update") or "")
    if not m:
        return 0
    return int(m.group(1)) * 10000 + int(m.group(2)) * 100 + int(m.group(3) or 0)


def is_ctgov_zip(path: Path) -> bool:
    """A zip with a study-named member (``NCT01234567.xml`` / ``.json``) among its first files (AllPublicXML.zip
    may start with a ``Contents.txt``; USPTO bulk zips hold one ``ipgYYMMDD.xml``, which is not claimed)."""
    if not path.name.lower().endswith(ZIP_SUFFIXES):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            files = (info.filename for info in z.infolist() if not info.is_dir())
            return any(_NCT_MEMBER.search(name) for _, name in zip(range(16), files))
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def _looks_like_v2(path: Path, ndjson: bool) -> bool:
    """The first bytes hold an API v2 study: a ``protocolSection`` object (NDJSON: in the first line's object)."""
    try:
        with open_binary(path) as f:
            head = f.readline(MAX_LINE) if ndjson else f.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return False
    text = head.decode("utf-8-sig", errors="replace")
    if ndjson:
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        return isinstance(obj, dict) and isinstance(obj.get("protocolSection"), dict)
    stripped = text.lstrip()
    # a key "protocolSection" whose value is an object: an escaped quote inside some other record's text
    # ("\"protocolSection\"") does not match
    return stripped[:1] in ("{", "[") and re.search(r'"protocolSection"\s*:\s*\{', text) is not None


def sniff(path: Path) -> bool:
    """ClinicalTrials.gov inputs told apart by name and content (XML studies are found by their root element)."""
    name = path.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return is_ctgov_zip(path)
    if name.endswith(NDJSON_SUFFIXES):
        return _looks_like_v2(path, ndjson=True)
    if name.endswith(JSON_SUFFIXES):
        return _looks_like_v2(path, ndjson=False)
    return False


def _read(path: Path, options: ReaderOptions) -> Iterator[CtgovRecord | BadRecord]:
    name = path.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return iter_ctgov_zip(path)
    if name.endswith(NDJSON_SUFFIXES):
        return iter_ctgov_ndjson(path)
    if name.endswith(JSON_SUFFIXES):
        return iter_ctgov_json(path)
    return iter_ctgov_xml(path)


READER = SourceReader(
    name="ctgov",
    description="ClinicalTrials.gov studies: legacy NCT*.xml (public.xsd) and AllPublicXML.zip; API v2 JSON "
                "(a study, a page of studies, NDJSON) and ctg-studies.json.zip",
    read=_read,
    suffixes=(".xml", ".xml.gz", *JSON_SUFFIXES, *NDJSON_SUFFIXES, *ZIP_SUFFIXES),
    roots=CTGOV_ROOTS,
    sniff=sniff,
    record_key=_record_key,
    record_rank=_record_rank,
    duplicate_reason="superseded_version",
)

