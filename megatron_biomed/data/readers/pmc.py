"""PMC full-text reader: JATS/NLM XML (``.nxml``, efetch ``<pmc-articleset>``, OAI-PMH) to records.

Keeps the title, abstract and body sections (section titles kept, one block per line). Drops
what a language model should not learn from running text: the reference list, tables,
formulas, figure graphics, supplementary material and in-text citation markers. Figure and
table captions are kept only with ``keep_captions``. Each record carries its licence (type, URL,
a normalized code such as ``cc-by`` or ``cc-by-nc``, and ``commercial_use``) so a corpus can be
restricted to the commercial-use subset.
"""

from __future__ import annotations

import gzip
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
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
    squash,
)

PMC_ROOTS = ("article", "pmc-articleset", "OAI-PMH")
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# Elements whose content never becomes training text. fig/table-wrap give their caption back
# when captions are requested.
_DROPPED = frozenset(
    {
        "table-wrap", "table", "table-wrap-group", "disp-formula", "inline-formula", "tex-math",
        "math", "graphic", "inline-graphic", "media", "fig", "fig-group", "ref-list",
        "supplementary-material", "alternatives", "object-id", "label", "chem-struct-wrap",
    }
)
_CAPTIONED = frozenset({"fig", "table-wrap"})
# Abstract types that are not the article's main abstract (eLife digests, PLoS synopses, ...).
_SECONDARY_ABSTRACTS = frozenset(
    {"toc", "synopsis", "summary", "teaser", "graphical", "highlights", "author-highlights",
     "editor-highlights", "web-summary", "executive-summary"}
)
_CC_URL = re.compile(r"creativecommons\.org/licenses/([a-z-]+)", re.IGNORECASE)
_YEAR = re.compile(r"\b(1[5-9]\d\d|2\d\d\d)\b")
_CITE = "\x00"
_CITE_RUN = re.compile(r"\s*\x00(?:[\s,;–-]*\x00)*")
_EMPTY_BRACKETS = re.compile(r"\s*[\(\[][\s,;–-]*[\)\]]")


@dataclass
class PmcSection:
    title: str
    depth: int  # 1 for a top-level <sec> of the body, 2 for a subsection, ...
    text: str  # paragraphs directly in this section (subsections are separate entries)


@dataclass
class PmcRecord:
    """One article. ``text`` = title, abstract and body joined by newlines."""

    pmcid: str | None
    pmid: str | None
    doi: str | None
    title: str
    abstract: str
    body: str
    sections: list[PmcSection]
    journal: str
    year: int | None
    language: list[str]
    article_type: str
    license_type: str | None
    license_url: str | None
    license_code: str
    commercial_use: bool | None
    source: str = "pmc"
    text: str = field(init=False)

    def __post_init__(self) -> None:
        self.text = "\n".join(p for p in (self.title, self.abstract, self.body) if p)

    @property
    def publication_types(self) -> list[str]:
        return [self.article_type] if self.article_type else []

    def to_dict(self) -> dict:
        d = asdict(self)
        d["publication_types"] = self.publication_types
        return d


# ---------------------------------------------------------------------------------------- text


def _inline_text(el: etree._Element) -> str:
    """Text of ``el`` without dropped elements and citation markers; tails are kept."""
    out: list[str] = []

    def walk(node: etree._Element) -> None:
        if node.text:
            out.append(node.text)
        for c in node:
            name = localname(c.tag)
            if name == "xref" and c.get("ref-type") == "bibr":
                out.append(_CITE)
            elif name and name not in _DROPPED and name not in ("sec", "title"):
                walk(c)
            if c.tail:
                out.append(c.tail)

    walk(el)
    text = "".join(out)
    if _CITE in text:
        # a run of citation markers with its separators ("[1]-[3]", "1, 4") goes, and so do
        # the brackets it leaves empty
        text = _CITE_RUN.sub("", text)
        text = _EMPTY_BRACKETS.sub("", text)
    return squash(text)


def _caption(el: etree._Element) -> str:
    cap = child(el, "caption")
    if cap is None:
        return ""
    parts = [element_text(child(cap, "title"))] + [_inline_text(p) for p in children(cap, "p")]
    return " ".join(p for p in parts if p)


class _BodyWalker:
    def __init__(self, keep_captions: bool):
        self.keep_captions = keep_captions
        self.blocks: list[str] = []
        self.sections: list[PmcSection] = []

    def walk(self, el: etree._Element, depth: int, section: list[str] | None) -> None:
        for c in el:
            name = localname(c.tag)
            if not name:
                continue
            if name in _DROPPED:
                if self.keep_captions and name in _CAPTIONED:
                    self._emit(_caption(c), section)
                continue
            if name == "sec":
                title = element_text(child(c, "title"))
                if title:
                    self.blocks.append(title)
                paragraphs: list[str] = []
                sec = PmcSection(title=title, depth=depth + 1, text="")
                self.sections.append(sec)
                self.walk(c, depth + 1, paragraphs)
                sec.text = "\n".join(paragraphs)
            elif name == "p":
                self._emit(_inline_text(c), section)
                self.walk_nested_blocks(c, section)
            elif name in ("title", "sec-meta"):
                continue
            else:
                self.walk(c, depth, section)

    def walk_nested_blocks(self, p: etree._Element, section: list[str] | None) -> None:
        """Lists, boxes and captioned floats may sit inside a <p>; their text is separate."""
        for c in p.iter():
            name = localname(c.tag)
            if self.keep_captions and name in _CAPTIONED:
                self._emit(_caption(c), section)

    def _emit(self, text: str, section: list[str] | None) -> None:
        if text:
            self.blocks.append(text)
            if section is not None:
                section.append(text)


def body_text(body: etree._Element | None, keep_captions: bool = False) -> tuple[str, list[PmcSection]]:
    if body is None:
        return "", []
    w = _BodyWalker(keep_captions)
    w.walk(body, 0, None)
    return "\n".join(w.blocks), w.sections


def _abstract(meta: etree._Element | None) -> str:
    abstracts = children(meta, "abstract")
    main = [a for a in abstracts if (a.get("abstract-type") or "") not in _SECONDARY_ABSTRACTS]
    if not main:
        return ""
    parts: list[str] = []
    for a in main[:1]:
        secs = children(a, "sec")
        if secs:
            for s in secs:
                title = element_text(child(s, "title")).rstrip(":")
                paras = " ".join(_inline_text(p) for p in s.iter() if localname(p.tag) == "p")
                if paras:
                    parts.append(f"{title}: {paras}" if title else paras)
        else:
            parts.extend(t for t in (_inline_text(p) for p in children(a, "p")) if t)
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ licences


def classify_license(url: str | None, text: str, license_type: str | None) -> tuple[str, bool | None]:
    """Normalized licence code and whether commercial use is allowed (None: cannot tell)."""
    low = f"{url or ''} {text}".lower()
    code = "unknown"
    m = _CC_URL.search(low)
    if "publicdomain/zero" in low or re.search(r"\bcc0\b", low):
        code = "cc0"
    elif m:
        code = "cc-" + m.group(1).strip("-")
    elif "publicdomain/mark" in low or (license_type or "").lower() == "public-domain" or "public domain" in low:
        code = "public-domain"
    elif "creative commons" in low:
        code = "cc-by"
        if "noncommercial" in low or "non-commercial" in low:
            code += "-nc"
        if "noderiv" in low or "no derivative" in low:
            code += "-nd"
        if "sharealike" in low or "share alike" in low:
            code += "-sa"
    if code == "unknown":
        if "non-commercial" in low or "noncommercial" in low:
            return "other-nc", False  # publisher's own open-access terms, non-commercial
        return code, None
    return code, "-nc" not in code


def _license(meta: etree._Element | None) -> tuple[str | None, str | None, str, bool | None]:
    # JATS puts these in <permissions>; NLM 2.x DTDs allowed them directly in <article-meta>
    holders = [child(meta, "permissions"), meta]
    lic = next((x for x in (child(h, "license") for h in holders) if x is not None), None)
    if lic is None:
        # older articles state the licence only in the copyright statement
        statement = " ".join(element_text(child(h, "copyright-statement")) for h in holders)
        code, commercial = classify_license(None, statement, None)
        return None, None, code, commercial
    url = lic.get(XLINK_HREF)
    if not url:
        for c in lic.iter():
            name = localname(c.tag)
            if name == "license_ref" and element_text(c):
                url = element_text(c)
                break
            if name == "ext-link" and "creativecommons.org" in (c.get(XLINK_HREF) or ""):
                url = c.get(XLINK_HREF)
                break
    license_type = lic.get("license-type")
    code, commercial = classify_license(url, element_text(lic), license_type)
    return license_type, url, code, commercial


# ------------------------------------------------------------------------------------- records


def _ids(meta: etree._Element | None) -> dict[str, str]:
    ids: dict[str, str] = {}
    for aid in children(meta, "article-id"):
        kind = aid.get("pub-id-type") or ""
        value = element_text(aid)
        if value and kind not in ids:
            ids[kind] = value
    return ids


def _year(meta: etree._Element | None) -> int | None:
    for date in children(meta, "pub-date"):
        m = _YEAR.search(element_text(child(date, "year")))
        if m:
            return int(m.group(1))
    return None


def _title(meta: etree._Element | None) -> str:
    title = find_path(meta, "title-group", "article-title")
    return "" if title is None else _inline_text(title)


def parse_article(article: etree._Element, keep_captions: bool = False) -> PmcRecord:
    front = child(article, "front")
    meta = child(front, "article-meta")
    ids = _ids(meta)
    pmcid = ids.get("pmc") or ids.get("pmcid") or ids.get("pmcaid")
    if pmcid and not pmcid.upper().startswith("PMC"):
        pmcid = "PMC" + pmcid
    body, sections = body_text(child(article, "body"), keep_captions)
    license_type, license_url, license_code, commercial = _license(meta)
    journal_meta = child(front, "journal-meta")
    journal = element_text(find_path(journal_meta, "journal-title-group", "journal-title")) or element_text(
        child(journal_meta, "journal-title")
    )
    # JATS declares xml:lang="en" as the default of <article>
    lang = article.get(XML_LANG) or "en"
    return PmcRecord(
        pmcid=pmcid,
        pmid=ids.get("pmid"),
        doi=ids.get("doi"),
        title=_title(meta),
        abstract=_abstract(meta),
        body=body,
        sections=sections,
        journal=journal,
        year=_year(meta),
        language=[lang],
        article_type=article.get("article-type") or "",
        license_type=license_type,
        license_url=license_url,
        license_code=license_code,
        commercial_use=commercial,
    )


def iter_pmc(path: str | Path, keep_captions: bool = False, data: bytes | None = None) -> Iterator[PmcRecord]:
    """Stream the articles of one PMC XML file. Raises :class:`BadInputError` on broken input.

    With ``data``, parse those bytes (e.g. a member of a tar archive) named ``path`` in errors.
    """
    root = root_name(path, data)
    if root not in PMC_ROOTS:
        raise BadInputError(path, 1, f"root element <{root}> is not PMC JATS XML (expected one of {PMC_ROOTS})")
    for _event, el in iter_elements(path, ("article",), data=data):
        # <article> never nests in JATS (sub-articles are <sub-article>), so each end is one record
        yield parse_article(el, keep_captions)
        release(el)


def is_tar(path: str | Path) -> bool:
    return str(path).endswith((".tar.gz", ".tgz", ".tar"))


def iter_pmc_tar(path: str | Path, keep_captions: bool = False) -> Iterator[PmcRecord]:
    """Stream the articles in a PMC bulk package (``oa_comm_xml.*.tar.gz``), member by member.

    A broken member raises :class:`BadInputError` naming ``archive::member``.
    """
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith((".xml", ".nxml")):
                    continue
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if not data.strip():
                    raise BadInputError(f"{path}::{member.name}", 0, "empty document (no XML element found)")
                yield from iter_pmc(f"{path}::{member.name}", keep_captions, data=data)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise BadInputError(path, 0, f"truncated or corrupt tar archive ({e}); re-download it") from e


def _record_key(record: dict) -> int | None:
    """A PMC article's identity: its PMID with bit 8 set (apart from the MEDLINE citation of the same PMID, see
    ``medline.medline_key``), else its PMCID negated; None when it has neither."""
    pmid = record.get("pmid")
    if pmid and str(pmid).isdigit():
        return int(pmid) << 9 | 256
    pmcid = str(record.get("pmcid") or "")
    if pmcid[3:].isdigit():
        return -(int(pmcid[3:]) << 9 | 256)
    return None


def _read(path: Path, options: ReaderOptions) -> Iterator[PmcRecord]:
    if is_tar(path):
        return iter_pmc_tar(path, options.keep_captions)
    return iter_pmc(path, options.keep_captions)


READER = SourceReader(
    name="pmc",
    description="PMC JATS XML: .nxml/.xml articles, OAI-PMH responses, bulk .tar.gz packages",
    read=_read,
    suffixes=(".xml", ".xml.gz", ".nxml", ".nxml.gz", ".tar.gz", ".tgz"),
    roots=PMC_ROOTS,
    sniff=is_tar,
    record_key=_record_key,
    duplicate_reason="duplicate_pmid",
)
