"""USPTO full-text patent reader: the weekly bulk files (``ipgYYMMDD.xml`` grants, ``ipaYYMMDD.xml`` applications,
plain, ``.gz`` or ``.zip``) to one record per patent document.

A bulk file is not one XML document: it concatenates thousands, each with its own ``<?xml ...?>`` declaration and
``<!DOCTYPE ...>``. :func:`split_documents` cuts the file at every line that starts with an ``<?xml`` declaration,
reading line by line, so memory holds one document at a time whatever the file's size. Each document is parsed on
its own with lxml's safe settings (no DTD loading, no network, no entity resolution).

Named character entities: the DTDs declare ISO 8879 entity sets (``&lsqb;``, ``&ldquo;``, ``&mgr;``, ...). Without
the DTD lxml keeps them as unresolved references, so before parsing each ``&name;`` the DTD would define is
rewritten to its numeric character reference: HTML5's table (``html.entities.html5``, which holds the ISO 8879
names MathML adopted) plus ISO 8879's ISOgrk1 Greek set (``&agr;`` ... ``&OHgr;``, W3C xml-entities isogrk1.ent),
which HTML5 lacks. XML's five predefined entities stay as they are; a name in neither table is removed (its one
character is lost; none occurs in the 478-document sample).

Formats, one :class:`Layout` each (where the format keeps each field): ``us-patent-grant`` and
``us-patent-application`` (Red Book DTD v4.0-v4.5, 2005 on), and the older formats of the same bulk series,
``PATDOC`` (ST.32 SGML-XML grants, 2001-2004) and ``patent-application-publication`` (pap-v1x applications,
2001-2004). Any other root is a :class:`BadRecord`.

Text (our choice): title, abstract, description, claims, in the order of the printed patent, one block per line;
the description keeps its own headings ("BACKGROUND OF THE INVENTION") as lines, each claim is one line starting
with its number ("1. A method ..."); no headings of ours are added. Tables, maths, chemical structure images,
figures and the claim statement ("What is claimed is:") are left out.

Family: the pre-grant publication (A1, A2, A9) and the grant (B1, B2, E, S1, P2 ...) of one application are one
family, keyed by the application's country and number; the grant beats any publication and a later publication
date beats an earlier one (see :func:`record_rank`).
"""

from __future__ import annotations

import gzip
import hashlib
import html.entities
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from lxml import etree

from megatron_biomed.data.readers.medline import BadRecord
from megatron_biomed.data.readers.registry import ReaderOptions, SourceReader
from megatron_biomed.data.readers.xmlstream import (
    BadInputError,
    child,
    children,
    element_text,
    find_path,
    localname,
    open_binary,
    squash,
)

_BOM = b"\xef\xbb\xbf"
_XML_DECL = b"<?xml"
_HEAD_BYTES = 4096
_SNIFF = re.compile(
    rb"<!DOCTYPE\s+(?:us-patent-grant|us-patent-application|PATDOC|patent-application-publication)\b"
    rb"|<(?:us-patent-grant|us-patent-application|PATDOC|patent-application-publication)[\s>]"
)
_FILE_ATTR = re.compile(rb'\bfile="([^"]+)"')
_DOC_NUMBER = re.compile(rb"<(?:doc-number|B110)>\s*(?:<DNUM>\s*<PDAT>)?([^<\s]+)")

# ----------------------------------------------------------------------------------------- entities

# ISO 8879:1986 ISOgrk1 (W3C xml-entities isogrk1.ent): the Greek letters by transliteration, lower case
# "<t>gr", upper case "<T>gr"; alpha .. omega in Unicode order without the final sigma.
_GREEK = ("a", "b", "g", "d", "e", "z", "ee", "th", "i", "k", "l", "m", "n", "x", "o", "p", "r", "s", "t", "u",
          "ph", "kh", "ps", "oh")


def _entity_table() -> dict[bytes, bytes]:
    table: dict[bytes, bytes] = {}
    for name, chars in html.entities.html5.items():
        if name.endswith(";"):
            table[name[:-1].encode()] = "".join(f"&#x{ord(c):X};" for c in chars).encode()
    for i, t in enumerate(_GREEK):
        upper = 0x391 + i + (i >= 17)  # U+03A2 is unassigned (there is no capital final sigma)
        lower = 0x3B1 + i + (i >= 17)  # U+03C2 is the final sigma, ISOgrk1's "sfgr"
        table[f"{t}gr".encode()] = f"&#x{lower:X};".encode()
        table[f"{t.upper()}gr".encode()] = f"&#x{upper:X};".encode()
    table[b"sfgr"] = b"&#x3C2;"
    for name in (b"amp", b"lt", b"gt", b"quot", b"apos"):  # XML's own: the parser knows them
        table[name] = b"&" + name + b";"
    return table


_ENTITIES = _entity_table()
_ENTITY_REF = re.compile(rb"&([A-Za-z][A-Za-z0-9]*);")


def resolve_entities(doc: bytes) -> bytes:
    """``doc`` with every named entity reference a USPTO DTD would define replaced by numeric references."""
    if b"&" not in doc:
        return doc
    return _ENTITY_REF.sub(lambda m: _ENTITIES.get(m.group(1), b""), doc)


# ------------------------------------------------------------------------------------------ records


@dataclass
class UsptoRecord:
    """One patent document. ``text`` = title, abstract, description and claims joined by newlines."""

    doc_number: str  # publication number as printed in the XML, e.g. "08926509", "D0680087", "20060288462"
    kind: str  # WIPO ST.16 kind code: A1/A2/A9 applications, B1/B2 utility grants, S1 design, P2/P3 plant, E reissue
    doc_type: str  # "grant" or "application"
    country: str
    publication_date: str  # YYYYMMDD
    application_number: str  # country + application number, e.g. "US12134151"
    application_date: str
    appl_type: str  # v4.x application-reference/@appl-type ("utility", "design", ...); pap-v1x filing type
    family_key: str  # what family dedup keys on: the application number
    file: str  # the document's file= attribute, e.g. "US08926509-20150106.XML" (v4.x only)
    doc_format: str  # root element: us-patent-grant, us-patent-application, PATDOC, patent-application-publication
    dtd_version: str
    title: str
    abstract: str
    description: str
    claims: list[str]
    ipc: list[str]  # e.g. "A61K 31/00", main first; see Layout.classes for where each format keeps them
    cpc: list[str]  # classifications-cpc (v4.3+): main-cpc first, then further-cpc
    language: list[str]
    source: str = "uspto"
    text: str = field(init=False)

    def __post_init__(self) -> None:
        parts = (self.title, self.abstract, self.description, "\n".join(self.claims))
        self.text = "\n".join(p for p in parts if p)

    @property
    def ipc_subclasses(self) -> list[str]:
        return list(dict.fromkeys(code[:4] for code in self.ipc))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ipc_subclasses"] = self.ipc_subclasses
        return d


Path_ = tuple[str, ...]  # child element names from an element, e.g. ("publication-reference", "document-id")


@dataclass(frozen=True)
class Layout:
    """Where one USPTO full-text format keeps each field (paths of child names below its bibliographic block)."""

    doc_type: str
    biblio: str  # the bibliographic block, a child of the root
    number: Path_
    kind: Path_
    date: Path_
    country: Path_ | None  # None: "US"
    app_number: Path_
    app_date: Path_
    app_country: Path_ | None
    appl_type: Path_ | None  # its appl-type attribute, else its text
    title: Path_
    classes: Callable[[etree._Element | None], tuple[list[str], list[str]]]  # biblio -> (ipc, cpc)
    abstract: str  # children of the root
    description: str
    claims: Path_  # from the root to the element holding the claims
    claim: str
    blocks: frozenset[str]  # headings and paragraphs: one line of text each
    phrases: frozenset[str]  # inline elements set off by spaces (nested claim-text, list items)
    dropped: frozenset[str]  # never text: tables, maths, images, paragraph numbers


def _collect_text(node: etree._Element, layout: Layout, out: list[str]) -> None:
    if node.text:
        out.append(node.text)
    for c in node:
        name = localname(c.tag)
        if name in layout.phrases:
            out.append(" ")
        if name not in layout.dropped:
            _collect_text(c, layout, out)
        if name in layout.phrases:
            out.append(" ")
        if c.tail:
            out.append(c.tail)


def _inline_text(el: etree._Element, layout: Layout) -> str:
    """Text of ``el`` without dropped elements; tails are kept."""
    # a module-level walker, not a closure: a closure that calls itself is a reference cycle per call, garbage the
    # cyclic collector frees only now and then, and memory would creep up over a bulk file
    out: list[str] = []
    _collect_text(el, layout, out)
    return squash("".join(out))


def _blocks(el: etree._Element | None, layout: Layout, out: list[str]) -> list[str]:
    """Headings and paragraphs below ``el`` in document order, one string each."""
    if el is None:
        return out
    for c in el:
        name = localname(c.tag)
        if name in layout.blocks:
            text = _inline_text(c, layout)
            if text:
                out.append(text)
        elif name and name not in layout.dropped:
            _blocks(c, layout, out)  # description-of-drawings, sections, BTEXT, ...
    return out


def _ipcr_symbol(el: etree._Element) -> str:
    subclass = "".join(element_text(child(el, k)) for k in ("section", "class", "subclass"))
    group = element_text(child(el, "main-group"))
    sub = element_text(child(el, "subgroup"))
    return f"{subclass} {group}/{sub}" if group else subclass


def _ipc_fixed(text: str) -> str:
    """IPC edition 7 in fixed columns (v4.0/v4.1 ``classification-ipc``, ST.32 ``B511``): subclass in 1-4, main
    group right-aligned in 5-7, subgroup from 8 on ("A45F  504" is A45F 5/04, "C07C24900" C07C 249/00)."""
    text = text.rstrip()
    if len(text) < 8:
        return text.replace(" ", "")
    return f"{text[:4]} {text[4:7].strip()}/{text[7:].strip()}"


def _ipc_slashed(text: str) -> str:
    """pap-v1x ``<ipc>``: "H01J001/62" is H01J 1/62."""
    text = "".join(text.split())
    if len(text) < 5 or "/" not in text:
        return text
    group, sub = text[4:].split("/", 1)
    return f"{text[:4]} {group.lstrip('0') or '0'}/{sub}"


_IPC_SYMBOL = re.compile(r"[A-HY]\d\d[A-Z]\b")  # section, class, subclass (IPC/CPC); Y: CPC's tagging section


def _unique(codes: list[str]) -> list[str]:
    """Codes in order without repeats; what is not an IPC/CPC symbol goes (a design's Locarno class "1402" stands
    in ST.32's IPC field B511)."""
    return list(dict.fromkeys(c for c in codes if _IPC_SYMBOL.match(c)))


def _v4_classes(biblio: etree._Element | None) -> tuple[list[str], list[str]]:
    """Red Book v4.x: ``classifications-ipcr`` (IPC 8), or ``classification-ipc`` main/further (edition 7, v4.0 and
    v4.1); ``classifications-cpc`` main-cpc then further-cpc."""
    ipc = [_ipcr_symbol(el) for el in children(child(biblio, "classifications-ipcr"), "classification-ipcr")]
    old = child(biblio, "classification-ipc")
    ipc += [_ipc_fixed(el.text or "") for el in children(old, "main-classification")
            + children(old, "further-classification") if element_text(el)]
    cpcs = child(biblio, "classifications-cpc")
    cpc = [_ipcr_symbol(el) for part in ("main-cpc", "further-cpc")
           for el in children(child(cpcs, part), "classification-cpc")]
    return _unique(ipc), _unique(cpc)


def _patdoc_classes(biblio: etree._Element | None) -> tuple[list[str], list[str]]:
    """ST.32 ``B510``: B511 main, B512 further (edition 7 fixed columns)."""
    b510 = find_path(biblio, "B500", "B510")
    els = children(b510, "B511") + children(b510, "B512")
    # not element_text: the columns are fixed, so the spaces count ("B32B  302" is B32B 3/02)
    return _unique([_ipc_fixed("".join(el.itertext()).strip("\n")) for el in els]), []


def _pap_classes(biblio: etree._Element | None) -> tuple[list[str], list[str]]:
    """pap-v1x ``classification-ipc``: primary then secondary ``<ipc>``."""
    cls = find_path(biblio, "technical-information", "classification-ipc")
    els = [ipc for part in ("classification-ipc-primary", "classification-ipc-secondary")
           for holder in children(cls, part) for ipc in children(holder, "ipc")]
    return _unique([_ipc_slashed(element_text(el)) for el in els]), []


_V4_DROPPED = frozenset({
    "tables", "table", "maths", "math", "chemistry", "img", "figure", "figures", "drawings",
    "table-external-doc", "us-sequence-list-doc", "sequence-list-doc", "us-chemistry", "us-math",
})
_V4 = dict(
    number=("publication-reference", "document-id", "doc-number"),
    kind=("publication-reference", "document-id", "kind"),
    date=("publication-reference", "document-id", "date"),
    country=("publication-reference", "document-id", "country"),
    app_number=("application-reference", "document-id", "doc-number"),
    app_date=("application-reference", "document-id", "date"),
    app_country=("application-reference", "document-id", "country"),
    appl_type=("application-reference",),
    title=("invention-title",),
    classes=_v4_classes,
    abstract="abstract", description="description", claims=("claims",), claim="claim",
    blocks=frozenset({"p", "heading"}),
    phrases=frozenset({"claim-text", "p", "li", "ul", "ol", "br"}),
    dropped=_V4_DROPPED,
)
# Element names: USPTO Red Book "us-patent-grant-v4x" / "us-patent-application-v4x" DTDs; ST.32 grant DTD
# ST32-US-Grant-025xml.dtd; pap-v15-2001-01-31.dtd / pap-v16-2002-01-01.dtd (as read from the sample documents).
LAYOUTS: dict[str, Layout] = {
    "us-patent-grant": Layout("grant", "us-bibliographic-data-grant", **_V4),
    "us-patent-application": Layout("application", "us-bibliographic-data-application", **_V4),
    "PATDOC": Layout(
        "grant", "SDOBI",
        number=("B100", "B110"), kind=("B100", "B130"), date=("B100", "B140"), country=("B100", "B190"),
        app_number=("B200", "B210"), app_date=("B200", "B220"), app_country=None, appl_type=None,
        title=("B500", "B540"), classes=_patdoc_classes,
        abstract="SDOAB", description="SDODE", claims=("SDOCL", "CL"), claim="CLM",
        blocks=frozenset({"PARA", "H"}),
        phrases=frozenset({"PARA", "CLMSTEP", "PTEXT"}),
        dropped=frozenset({"CWU", "EMI", "TABLE-US", "TABLE-CALS", "MATH-US", "CHEM-US", "MATHEMATICA", "MATHML"}),
    ),
    "patent-application-publication": Layout(
        "application", "subdoc-bibliographic-information",
        number=("document-id", "doc-number"), kind=("document-id", "kind-code"), date=("document-id", "document-date"),
        country=None, app_number=("domestic-filing-data", "application-number", "doc-number"),
        app_date=("domestic-filing-data", "filing-date"), app_country=None, appl_type=("publication-filing-type",),
        title=("technical-information", "title-of-invention"), classes=_pap_classes,
        abstract="subdoc-abstract", description="subdoc-description", claims=("subdoc-claims",), claim="claim",
        blocks=frozenset({"paragraph", "heading"}),
        phrases=frozenset({"claim-text", "paragraph"}),
        dropped=frozenset({"number", "table", "table-cwu", "figure", "image", "math-cwu", "chemistry-cwu"}),
    ),
}
USPTO_ROOTS = tuple(LAYOUTS)


def _text_at(el: etree._Element | None, path: Path_ | None) -> str:
    return element_text(find_path(el, *path)) if path else ""


def parse_patent(root: etree._Element, doc: PatentDocument) -> UsptoRecord | BadRecord:
    """A record from one parsed document; BadRecord when it has no publication number."""
    doc_format = localname(root.tag)
    layout = LAYOUTS[doc_format]
    biblio = child(root, layout.biblio)
    number = _text_at(biblio, layout.number)
    if not number:
        return BadRecord(doc.line, f"{doc.name} (document at line {doc.line}): no publication number "
                               f"({layout.biblio}/{'/'.join(layout.number)})")
    country = _text_at(biblio, layout.country) or "US"
    app_number = _text_at(biblio, layout.app_number)
    application_number = f"{_text_at(biblio, layout.app_country) or 'US'}{app_number}" if app_number else ""
    appl = find_path(biblio, *layout.appl_type) if layout.appl_type else None
    ipc, cpc = layout.classes(biblio)
    lang = (root.get("lang") or "").lower()
    claims = find_path(root, *layout.claims)
    title = find_path(biblio, *layout.title)
    return UsptoRecord(
        doc_number=number,
        kind=_text_at(biblio, layout.kind),
        doc_type=layout.doc_type,
        country=country,
        publication_date=_text_at(biblio, layout.date) or root.get("date-publ") or "",
        application_number=application_number,
        application_date=_text_at(biblio, layout.app_date),
        appl_type=("" if appl is None else appl.get("appl-type") or element_text(appl)),
        # our choice: without an application number the document is its own family
        family_key=application_number or f"{country}{number}",
        file=root.get("file") or "",
        doc_format=doc_format,
        dtd_version=root.get("dtd-version") or root.get("DTD") or "",
        title=_inline_text(title, layout) if title is not None else "",
        abstract="\n".join(_blocks(child(root, layout.abstract), layout, [])),
        description="\n".join(_blocks(child(root, layout.description), layout, [])),
        claims=[t for t in (_inline_text(c, layout) for c in children(claims, layout.claim)) if t],
        ipc=ipc,
        cpc=cpc,
        # the v4.x root states lang="EN"; the older formats are English-only publications
        language=[lang or "en"],
    )


# ---------------------------------------------------------------------------------------- splitting


@dataclass
class PatentDocument:
    line: int  # 1-based line of the bulk file where the document starts
    data: bytes

    @property
    def name(self) -> str:
        """The document's ``file=`` attribute, else its first doc-number, else "document" (for error messages)."""
        # the root's start tag comes right after the DOCTYPE in v4.x; ST.32's DOCTYPE may declare hundreds of
        # image entities, so its number is looked for in the whole document (this runs for broken documents only)
        m = _FILE_ATTR.search(self.data[:_HEAD_BYTES]) or _DOC_NUMBER.search(self.data)
        return m.group(1).decode("utf-8", "replace") if m else "document"


def _is_declaration(line: bytes) -> bool:
    return line.lstrip(b" \t\r\n").startswith(_XML_DECL) or line.startswith(_BOM + _XML_DECL)


def split_documents(lines: Iterator[bytes]) -> Iterator[PatentDocument]:
    """Cut a stream of lines at every line that starts with an ``<?xml`` declaration (and at the start).

    Text before the first declaration counts as a document when it is not blank (a single document may lack the
    declaration). Only the current document's lines are held.
    """
    buf: list[bytes] = []
    start = 1
    lineno = 0
    for lineno, line in enumerate(lines, 1):
        if buf and _is_declaration(line):
            data = b"".join(buf)
            if data.strip():
                yield PatentDocument(start, data)
            buf = []
        if not buf:
            start = lineno
        buf.append(line)
    data = b"".join(buf)
    if data.strip():
        yield PatentDocument(start, data)


_PARSER = etree.XMLParser(
    load_dtd=False, no_network=True, resolve_entities=False, huge_tree=True, remove_comments=True,
    remove_pis=True,  # <?BRFSUM ...?>, <?DETDESC ...?> section markers
)


def parse_document(doc: PatentDocument) -> UsptoRecord | BadRecord:
    """One document of a bulk file as a record, or a BadRecord naming it and the bulk-file line of the problem."""
    try:
        root = etree.fromstring(resolve_entities(doc.data), _PARSER)
    except etree.XMLSyntaxError as e:
        line = doc.line + max((e.lineno or 1) - 1, 0)
        msg = str(e.msg if getattr(e, "msg", None) else e)
        return BadRecord(line, f"{doc.name} (document at line {doc.line}): malformed XML ({msg})")
    name = localname(root.tag)
    if name not in LAYOUTS:
        return BadRecord(doc.line, f"{doc.name} (document at line {doc.line}): root element <{name}> is not a "
                                   f"USPTO patent document (expected one of {USPTO_ROOTS})")
    return parse_patent(root, doc)


# ------------------------------------------------------------------------------------------- files


def is_zip(path: str | Path) -> bool:
    return str(path).lower().endswith(".zip")


def _zip_members(zf: zipfile.ZipFile) -> list[str]:
    return sorted(n for n in zf.namelist() if n.lower().endswith(".xml"))


def _lines(f: IO[bytes], path: str) -> Iterator[bytes]:
    lineno = 0
    try:
        for lineno, line in enumerate(f, 1):
            yield line
    except (EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile) as e:
        raise BadInputError(
            path, lineno, f"truncated or corrupt compressed stream after line {lineno} ({e}); re-download the file"
        ) from e


def _read_stream(f: IO[bytes], path: str) -> Iterator[UsptoRecord | BadRecord]:
    seen = False
    for doc in split_documents(_lines(f, path)):
        seen = True
        yield parse_document(doc)
    if not seen:
        raise BadInputError(path, 0, "empty file (no patent document found)")


def iter_uspto(path: str | Path) -> Iterator[UsptoRecord | BadRecord]:
    """Stream the documents of one bulk file (plain, gzip by magic bytes, or a .zip of .xml members).

    A broken document gives a :class:`BadRecord` with its bulk-file line; a broken file raises
    :class:`BadInputError`. Members of a zip are named ``archive::member`` in errors.
    """
    if is_zip(path):
        try:
            with zipfile.ZipFile(path) as zf:
                members = _zip_members(zf)
                if not members:
                    raise BadInputError(path, 0, "zip archive without an .xml member")
                for member in members:
                    with zf.open(member) as f:
                        yield from _read_stream(f, f"{path}::{member}")
        except zipfile.BadZipFile as e:
            raise BadInputError(path, 0, f"truncated or corrupt zip archive ({e}); re-download it") from e
        return
    with open_binary(path) as f:
        yield from _read_stream(f, str(path))


def _head(path: Path) -> bytes:
    try:
        if is_zip(path):
            with zipfile.ZipFile(path) as zf:
                members = _zip_members(zf)
                if not members:
                    return b""
                with zf.open(members[0]) as f:
                    return f.read(_HEAD_BYTES)
        with open_binary(path) as f:
            return f.read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile):
        return b""


def sniff(path: str | Path) -> bool:
    """True for a USPTO full-text file: its first non-blank text is an ``<?xml`` declaration followed by a USPTO
    patent DOCTYPE or root element (a bulk file is many XML documents, so its root alone cannot tell)."""
    head = _head(Path(path))
    if head.startswith(_BOM):
        head = head[len(_BOM):]
    head = head.lstrip()
    return head.startswith(_XML_DECL) and _SNIFF.search(head) is not None


# ---------------------------------------------------------------------------------- dedup identity


def family_hash(family_key: str) -> int:
    """A stable 63-bit integer for a family key (blake2b, 8 bytes, shifted right by one)."""
    return int.from_bytes(hashlib.blake2b(family_key.encode(), digest_size=8).digest(), "big") >> 1


def record_key(record: dict) -> int | None:
    """One copy per patent family (the application number): its grant and its pre-grant publications."""
    key = record.get("family_key")
    return family_hash(key) if key else None


def record_rank(record: dict) -> int:
    """Grant over application, then the later publication date (YYYYMMDD): a B2 grant retires its A1 publication,
    a republication (A2) or corrected publication (A9) the earlier A1. The rule is our choice (the grant's text is
    the one examined and allowed); the kind codes are USPTO's (uspto.gov, "Kind Codes Included in the USPTO Patent
    Documents", after WIPO ST.16): B2 is a grant whose application had a pre-grant publication, B1 one without."""
    date = str(record.get("publication_date") or "")
    date_rank = int(date) if date.isdigit() and len(date) == 8 else 0
    return (100_000_000 if record.get("doc_type") == "grant" else 0) + date_rank


def _read(path: Path, options: ReaderOptions) -> Iterator[UsptoRecord | BadRecord]:
    return iter_uspto(path)


READER = SourceReader(
    name="uspto",
    description="USPTO full-text patent XML: weekly bulk files ipgYYMMDD/ipaYYMMDD (.xml, .xml.gz, .zip)",
    read=_read,
    suffixes=(".xml", ".xml.gz", ".zip"),
    roots=USPTO_ROOTS,
    sniff=sniff,
    record_key=record_key,
    record_rank=record_rank,
    duplicate_reason="patent_family_duplicate",
)
