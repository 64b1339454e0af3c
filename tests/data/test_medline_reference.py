"""The MEDLINE reader and its XML helpers against reference definitions (issue 19, P1b speed-ups).

The reader was made faster (``str.split`` squashing, leaf elements without ``itertext``, child lookups
filtered in C, ``to_dict`` without ``asdict``); these tests hold it to the plain definitions it replaced:
whitespace squashed by ``re.sub(r"\\s+", " ", ...).strip()`` over ``"".join(el.itertext())``, children
matched by ``local-name()`` in XPath, and every record of every shared MEDLINE sample rebuilt from them.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
from lxml import etree

from megatron_biomed.data.cleaning.filters import word_count_below
from megatron_biomed.data.readers import BadRecord, MedlineDeletion, MedlineRecord, iter_medline
from megatron_biomed.data.readers.xmlstream import child, children, element_text, squash

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pubmed_xml"
_WS = re.compile(r"\s+")
_YEAR = re.compile(r"\b(1[5-9]\d\d|2\d\d\d)\b")


# ------------------------------------------------------------------ reference definitions (slow, plain)


def ref_text(el) -> str:
    return "" if el is None else _WS.sub(" ", "".join(el.itertext())).strip()


def ref_kids(el, name: str) -> list:
    return [] if el is None else el.xpath("*[local-name() = $n]", n=name)


def ref_kid(el, *names: str):
    for name in names:
        found = ref_kids(el, name)
        el = found[0] if found else None
    return el


def ref_year(article) -> int | None:
    pub_date = ref_kid(article, "Journal", "JournalIssue", "PubDate")
    texts = [ref_text(ref_kid(pub_date, "Year")), ref_text(ref_kid(pub_date, "MedlineDate"))]
    texts += [ref_text(ref_kid(d, "Year")) for d in ref_kids(article, "ArticleDate")]
    years = [m.group(1) for m in map(_YEAR.search, texts) if m]
    return int(years[0]) if years else None


def ref_doi(article, pubmed_data) -> str | None:
    candidates = [e for e in ref_kids(article, "ELocationID") if e.get("EIdType") == "doi"]
    candidates += [e for e in ref_kids(ref_kid(pubmed_data, "ArticleIdList"), "ArticleId") if e.get("IdType") == "doi"]
    dois = [t for t in map(ref_text, candidates) if t]
    return dois[0] if dois else None


def ref_record(citation, pubmed_data) -> dict | str:
    pmid_el = ref_kid(citation, "PMID")
    pmid = ref_text(pmid_el)
    if not pmid.isdigit():
        return "bad"
    try:
        version = int(pmid_el.get("Version") or 1)
    except ValueError:
        return "bad"
    article = ref_kid(citation, "Article")
    sections = []
    for sec in ref_kids(ref_kid(article, "Abstract"), "AbstractText"):
        label = (sec.get("Label") or "").strip()
        if ref_text(sec):
            sections.append(f"{label}: {ref_text(sec)}" if label else ref_text(sec))
    title, abstract = ref_text(ref_kid(article, "ArticleTitle")), "\n".join(sections)
    nonempty = lambda els: [t for t in map(ref_text, els) if t]  # noqa: E731
    return {
        "pmid": pmid, "version": version, "title": title, "abstract": abstract,
        "journal": ref_text(ref_kid(article, "Journal", "Title")), "year": ref_year(article),
        "language": nonempty(ref_kids(article, "Language")),
        "mesh_terms": nonempty(ref_kid(h, "DescriptorName")
                               for h in ref_kids(ref_kid(citation, "MeshHeadingList"), "MeshHeading")),
        "publication_types": nonempty(ref_kids(ref_kid(article, "PublicationTypeList"), "PublicationType")),
        "doi": ref_doi(article, pubmed_data), "source": "medline",
        "text": title + "\n" + abstract if abstract else title,
    }


def ref_items(path: Path) -> list:
    parser = etree.XMLParser(load_dtd=False, no_network=True, resolve_entities=False, huge_tree=True,
                             remove_comments=True)
    root = etree.parse(str(path), parser).getroot()
    out = []
    for el in root.iter(etree.Element):
        name, parent = etree.QName(el).localname, el.getparent()
        if name == "PubmedArticle":
            citation = ref_kid(el, "MedlineCitation")
            out.append("bad" if citation is None else ref_record(citation, ref_kid(el, "PubmedData")))
        elif name == "MedlineCitation" and etree.QName(parent).localname != "PubmedArticle":
            out.append(ref_record(el, None))
        elif name == "DeleteCitation":
            out += [("delete", ref_text(p), int(p.get("Version") or 1))
                    for p in ref_kids(el, "PMID") if ref_text(p).isdigit()]
    return out


def ours(path: Path) -> list:
    out = []
    for item in iter_medline(path):
        if isinstance(item, MedlineRecord):
            assert item.to_dict() == dataclasses.asdict(item)
            out.append(item.to_dict())
        elif isinstance(item, MedlineDeletion):
            out.append(("delete", item.pmid, item.version))
        else:
            assert isinstance(item, BadRecord)
            out.append("bad")
    return out


# ------------------------------------------------------------------ tests


def test_squash_is_the_regex_definition_for_every_unicode_whitespace():
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    regex_ws = re.findall(r"\s", everything)
    assert regex_ws == [c for c in everything if c.isspace()] and len(regex_ws) == 29
    samples = ["", " ", "a", "  a  b\n\tc  ", "\xa0x\u3000y\u2028\u2029z\x85"]
    samples += ["".join(regex_ws) + "w" + "".join(regex_ws)]
    samples += [f"x{c}{c}y{c}" for c in regex_ws]
    for s in samples:
        assert squash(s) == _WS.sub(" ", s).strip()
    assert squash(None) == ""


def test_element_text_child_and_children_match_the_reference_definitions():
    xml = (b'<r xmlns:m="urn:m"><a>  leaf\n text </a><a><!--c--></a><m:a>ns <i>in</i>line<?pi x?> tail </m:a>'
           b"<b/><a>x<b>y<c>z</c></b>\xc2\xa0w</a></r>")
    root = etree.fromstring(xml)
    for el in root.iter(etree.Element):
        assert element_text(el) == ref_text(el)
        for name in ("a", "b", "c", "i", "zz"):
            assert children(el, name) == ref_kids(el, name)
            assert child(el, name) is ref_kid(el, name)
    assert element_text(None) == "" and child(None, "a") is None and children(None, "a") == []
    assert [element_text(a) for a in children(root, "a")] == ["leaf text", "", "ns inline tail", "xyz w"]


def test_word_count_below_is_len_split():
    for text in ["", " ", "one", "one two", " a\n b\tc\xa0d ", "w " * 19, "w " * 20, "w " * 21 + "  "]:
        for n in range(1, 24):
            assert word_count_below(text, n) == (len(text.split()) < n), (text, n)


@pytest.mark.skipif(not DATA.exists(), reason=f"shared data not found at {DATA} (see shared/data/pubmed_xml/SOURCE.md)")
def test_every_shared_medline_sample_matches_the_reference_record_by_record():
    files = sorted(DATA.rglob("*.xml"))
    assert len(files) >= 25
    total = 0
    for path in files:
        mine, ref = ours(path), ref_items(path)
        assert mine == ref, path
        total += len(mine)
    assert total > 800
