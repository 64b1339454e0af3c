"""MEDLINE/PubMed XML reader: NLM baseline and update files to one record per citation.

Streams ``PubmedArticleSet`` (current DTD) and ``MedlineCitationSet`` (pre-2017 DTD) files, plain
or ``.xml.gz``, with bounded memory. Update files also carry ``<DeleteCitation>`` blocks; they are
yielded as :class:`MedlineDeletion` events so a caller reading baseline + updates in file-name
order can apply them (see :func:`latest_citations` and ``cleaning/reconcile.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from lxml import etree

from megatron_biomed.data.readers.registry import ReaderOptions, SourceReader
from megatron_biomed.data.readers.xmlstream import (
    BadInputError,
    child,
    children,
    element_text,
    find_path,
    iter_elements,
    localname,
    release,
    root_name,
)

MEDLINE_ROOTS = ("PubmedArticleSet", "MedlineCitationSet")
_YEAR = re.compile(r"\b(1[5-9]\d\d|2\d\d\d)\b")


@dataclass
class MedlineRecord:
    """One citation. ``text`` (title + newline + abstract) is what tokenizers train on."""

    pmid: str
    version: int
    title: str
    abstract: str
    journal: str
    year: int | None
    language: list[str]
    mesh_terms: list[str]
    publication_types: list[str]
    doi: str | None = None
    source: str = "medline"
    text: str = field(init=False)

    def __post_init__(self) -> None:
        self.text = self.title + "\n" + self.abstract if self.abstract else self.title

    def to_dict(self) -> dict:
        # what dataclasses.asdict gives (same keys in the same order, lists copied), without its generic
        # deep-copy recursion, which showed in the step-1 profile
        return {name: list(v) if isinstance(v, list) else v
                for name in _RECORD_FIELDS for v in (getattr(self, name),)}


_RECORD_FIELDS = tuple(f.name for f in fields(MedlineRecord))


@dataclass(frozen=True)
class MedlineDeletion:
    """A ``<DeleteCitation>`` entry: this PMID (at this version) is withdrawn from PubMed."""

    pmid: str
    version: int


@dataclass(frozen=True)
class BadRecord:
    """A citation that could not be turned into a record (e.g. no PMID); the caller decides."""

    line: int
    problem: str


def abstract_text(abstract: etree._Element | None) -> str:
    """Abstract as text. Structured abstracts keep their labels, one section per line."""
    if abstract is None:
        return ""
    parts = []
    for sec in children(abstract, "AbstractText"):
        body = element_text(sec)
        if not body:
            continue
        label = (sec.get("Label") or "").strip()
        parts.append(f"{label}: {body}" if label else body)
    return "\n".join(parts)


def _year(article: etree._Element | None) -> int | None:
    pub_date = find_path(article, "Journal", "JournalIssue", "PubDate")
    for candidate in (child(pub_date, "Year"), child(pub_date, "MedlineDate")):
        m = _YEAR.search(element_text(candidate))
        if m:
            return int(m.group(1))
    for date in children(article, "ArticleDate"):
        m = _YEAR.search(element_text(child(date, "Year")))
        if m:
            return int(m.group(1))
    return None


def _doi(article: etree._Element | None, pubmed_data: etree._Element | None) -> str | None:
    for loc in children(article, "ELocationID"):
        if loc.get("EIdType") == "doi" and (doi := element_text(loc)):
            return doi
    for aid in children(child(pubmed_data, "ArticleIdList"), "ArticleId"):
        if aid.get("IdType") == "doi" and (doi := element_text(aid)):
            return doi
    return None


def _nonempty(texts: Iterable[str]) -> list[str]:
    return [t for t in texts if t]


def parse_citation(
    citation: etree._Element, pubmed_data: etree._Element | None = None
) -> MedlineRecord | BadRecord:
    """Build a record from a ``<MedlineCitation>`` element (plus ``<PubmedData>`` if present)."""
    pmid_el = child(citation, "PMID")
    pmid = element_text(pmid_el)
    if not pmid.isdigit():
        return BadRecord(citation.sourceline or 0, f"MedlineCitation without a numeric PMID ({pmid!r})")
    try:
        version = int(pmid_el.get("Version") or 1)
    except ValueError:
        return BadRecord(pmid_el.sourceline or 0, f"PMID {pmid}: bad Version attribute")
    article = child(citation, "Article")
    return MedlineRecord(
        pmid=pmid,
        version=version,
        title=element_text(child(article, "ArticleTitle")),
        abstract=abstract_text(child(article, "Abstract")),
        journal=element_text(find_path(article, "Journal", "Title")),
        year=_year(article),
        language=_nonempty(element_text(x) for x in children(article, "Language")),
        mesh_terms=_nonempty(
            element_text(child(h, "DescriptorName"))
            for h in children(child(citation, "MeshHeadingList"), "MeshHeading")
        ),
        publication_types=_nonempty(
            element_text(x) for x in children(child(article, "PublicationTypeList"), "PublicationType")
        ),
        doi=_doi(article, pubmed_data),
    )


def _deletions(el: etree._Element) -> Iterator[MedlineDeletion]:
    for pmid_el in children(el, "PMID"):
        pmid = element_text(pmid_el)
        if pmid.isdigit():
            yield MedlineDeletion(pmid, int(pmid_el.get("Version") or 1))


def iter_medline(
    path: str | Path,
) -> Iterator[MedlineRecord | MedlineDeletion | BadRecord]:
    """Stream one MEDLINE/PubMed XML file in document order.

    Yields a :class:`MedlineRecord` per citation, a :class:`MedlineDeletion` per PMID listed in a
    ``<DeleteCitation>``, and :class:`BadRecord` for a citation that cannot be read. Raises
    :class:`BadInputError` when the file itself is broken or is not MEDLINE XML.
    """
    root = root_name(path)
    if root not in MEDLINE_ROOTS:
        raise BadInputError(
            path, 1, f"root element <{root}> is not MEDLINE/PubMed XML (expected one of {MEDLINE_ROOTS})"
        )
    tags = ("MedlineCitation", "PubmedArticle", "PubmedBookArticle", "DeleteCitation")
    for _event, el in iter_elements(path, tags):
        name = localname(el.tag)
        parent = el.getparent()
        if name == "MedlineCitation":
            if parent is not None and localname(parent.tag) == "PubmedArticle":
                continue  # handled with its PubmedData when the PubmedArticle ends
            yield parse_citation(el)
            release(el)
        elif name == "PubmedArticle":
            citation = child(el, "MedlineCitation")
            if citation is None:
                yield BadRecord(el.sourceline or 0, "PubmedArticle without MedlineCitation")
            else:
                yield parse_citation(citation, child(el, "PubmedData"))
            release(el)
        elif name == "DeleteCitation":
            yield from _deletions(el)
            release(el)
        elif name == "PubmedBookArticle":
            release(el)  # NCBI Bookshelf chapters: not journal citations, not read here


def latest_citations(paths: Iterable[str | Path]) -> dict[str, MedlineRecord]:
    """Read baseline + update files in file-name order; return the live citation per PMID.

    For each PMID the highest ``Version`` wins, and for equal versions the later file (a revised
    record in an update file replaces the baseline one). A ``<DeleteCitation>`` removes the
    copies read before it. This holds every record in memory: fine for tests and samples; the
    command-line pipeline does the same bookkeeping on shards on disk (``cleaning/reconcile.py``).
    """
    live: dict[tuple[str, int], MedlineRecord] = {}
    for path in sorted(paths, key=lambda p: (Path(p).name, str(p))):
        for item in iter_medline(path):
            if isinstance(item, MedlineRecord):
                live[(item.pmid, item.version)] = item
            elif isinstance(item, MedlineDeletion):
                live.pop((item.pmid, item.version), None)
    best: dict[str, MedlineRecord] = {}
    for (pmid, version), rec in live.items():
        if pmid not in best or version >= best[pmid].version:
            best[pmid] = rec
    return best


def medline_key(pmid: str | int, version: int) -> int:
    """Integer identity of a citation version: ``pmid << 9 | version`` (compact for 36M PMIDs).

    ``key >> 8`` is the same for every version of one PMID, and bit 8 keeps PMC articles apart
    from MEDLINE citations with the same PMID (an abstract and its full text are not duplicates).
    """
    return int(pmid) << 9 | min(int(version), 255)


def _record_key(record: dict) -> int:
    return medline_key(record["pmid"], record.get("version") or 1)


def _read(path: Path, options: ReaderOptions) -> Iterator[MedlineRecord | MedlineDeletion | BadRecord]:
    return iter_medline(path)


READER = SourceReader(
    name="medline",
    description="MEDLINE/PubMed XML (NLM baseline and update files), plain or .gz",
    read=_read,
    suffixes=(".xml", ".xml.gz"),
    roots=MEDLINE_ROOTS,
    record_key=_record_key,
    duplicate_reason="superseded",
)
