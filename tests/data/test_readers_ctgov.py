"""ClinicalTrials.gov reader: the real legacy XML sample, API v2 JSON of our own making, versions, bad input."""

from __future__ import annotations

import csv
import gzip
import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from tool_scripts import run_pubmed_to_jsonl

from megatron_biomed.data.cleaning import CleaningConfig, filter_reason
from megatron_biomed.data.readers import BadInputError, BadRecord, detect_format, get_reader
from megatron_biomed.data.readers.ctgov import nct_key
from megatron_biomed.data.readers.ctgov_study import (
    Study,
    block_text,
    iso_date,
    normalize_phases,
    normalize_status,
    to_record,
)
from megatron_biomed.data.readers.ctgov_xml import parse_clinical_study
from megatron_biomed.data.readers.xmlstream import iter_elements

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = ROOT.parent / "shared" / "data" / "clinical_trials"
SAMPLE = SAMPLE_DIR / "ctgov_legacy_xml_sample.jsonl.gz"
READER = get_reader("ctgov")






run = run_pubmed_to_jsonl


def report(out: Path) -> dict:
    return json.loads((out / "cleaning_report.json").read_text())


def kept(out: Path) -> dict[str, dict]:
    return {r["nct_id"]: r for p in sorted(out.glob("*.jsonl")) for r in map(json.loads, p.read_text().splitlines())}


def read(path: Path) -> list:
    return list(READER.read(path, None))


@pytest.fixture(scope="module")
def sample_xml() -> dict[str, str]:
    """nct_id -> the original XML file's text (SOURCE.md: the shared sample wraps each file in one JSON line)."""
    if not SAMPLE.exists():
        pytest.skip(f"shared ClinicalTrials.gov sample not staged at {SAMPLE}")
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        return {r["nct_id"]: r["xml"] for r in map(json.loads, f)}


def write_xml_files(sample: dict[str, str], directory: Path, ids=None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for nct in ids or sample:
        p = directory / f"{nct}.xml"
        p.write_text(sample[nct], encoding="utf-8")
        paths.append(p)
    return paths


def xml_study(sample: dict[str, str], nct: str) -> Study:
    el = next(e for _, e in iter_elements(nct, ("clinical_study",), data=sample[nct].encode()))
    return parse_clinical_study(el)


# --------------------------------------------------------------------- API v2 fixtures of our own making
# Built from a study's fields in the published schema (ClinicalTrials.gov REST API ctg-oas-v2.yaml 2.0.5,
# components/schemas Study, ProtocolSection and its modules); `markup` fields as CommonMark (the API's default
# markupFormat=markdown): paragraphs separated by blank lines, "* " list items, ASCII punctuation escaped.

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~])")


def _markdown(text: str) -> str:
    out = []
    for line in text.split("\n"):
        bullet = line.startswith("- ")
        body = _MD_SPECIAL.sub(r"\\\1", line[2:] if bullet else line)
        out.append(f"* {body}" if bullet else body)
    return "\n\n".join(out)


def _enum(display: str) -> str:
    return display.upper().replace(" ", "_")


def v2_study(s: Study, *, last_update: str | None = None, summary: str | None = None, status: str | None = None,
             drop_id: bool = False) -> dict:
    ident = {"nctId": s.nct_id, "briefTitle": s.brief_title}
    if s.official_title:
        ident["officialTitle"] = s.official_title
    if drop_id:
        del ident["nctId"]
    out = lambda o: {"measure": o.measure, "timeFrame": o.time_frame, "description": o.description}  # noqa: E731
    protocol = {
        "identificationModule": ident,
        "statusModule": {
            "overallStatus": status or s.status,
            "lastUpdateSubmitDate": last_update or s.last_update,
            "lastUpdatePostDateStruct": {"date": last_update or s.last_update, "type": "ACTUAL"},
        },
        "descriptionModule": {"briefSummary": _markdown(summary if summary is not None else s.brief_summary)},
        "conditionsModule": {"conditions": s.conditions, "keywords": s.keywords},
        "designModule": {"studyType": s.study_type, "phases": s.phases},
        "armsInterventionsModule": {
            "armGroups": [{"label": a.label, "type": _enum(a.type), "description": a.description} for a in s.arms],
            "interventions": [{"type": _enum(i.type), "name": i.name, "description": i.description,
                               "otherNames": i.other_names} for i in s.interventions],
        },
        "outcomesModule": {"primaryOutcomes": [out(o) for o in s.primary_outcomes],
                           "secondaryOutcomes": [out(o) for o in s.secondary_outcomes]},
        "eligibilityModule": {"eligibilityCriteria": _markdown(s.eligibility), "sex": "ALL"},
    }
    if s.detailed_description:
        protocol["descriptionModule"]["detailedDescription"] = _markdown(s.detailed_description)
    return {"protocolSection": protocol, "derivedSection": {}, "hasResults": s.has_results}


def page(*studies: dict, token: str | None = "NF0g5JGBlPMu") -> str:
    doc = {"studies": list(studies)}
    if token:
        doc["nextPageToken"] = token
    return json.dumps(doc, indent=2)


def ndjson(*studies: dict) -> str:
    return "".join(json.dumps(s) + "\n" for s in studies)


# ------------------------------------------------------------------------------------ the real sample


def test_every_sample_study_is_read(sample_xml, tmp_path):
    """All 2,247 NCT*.xml files: none bad, each text holds its brief title, statuses as in index.tsv."""
    paths = write_xml_files(sample_xml, tmp_path / "xml")
    assert detect_format(paths[0]) == "ctgov"
    records = [item for p in paths for item in read(p)]
    assert not [r for r in records if isinstance(r, BadRecord)]
    assert len(records) == len(sample_xml) == 2247
    assert {r.nct_id for r in records} == set(sample_xml)
    for r in records:
        assert r.text and r.brief_title and r.text.startswith(r.brief_title), r.nct_id
        assert r.last_update and READER.record_rank(r.to_dict()) > 19990000, r.nct_id
    with open(SAMPLE_DIR / "index.tsv", encoding="utf-8", newline="") as f:
        index = list(csv.DictReader(f, delimiter="\t"))
    assert Counter(r.status for r in records) == Counter(normalize_status(row["overall_status"]) for row in index)
    assert Counter(r.study_type for r in records)["INTERVENTIONAL"] == sum(
        row["study_type"] == "Interventional" for row in index)
    reasons = Counter(filter_reason(r.to_dict(), CleaningConfig()) for r in records)
    assert reasons["withdrawn"] == 45  # index.tsv: 45 studies with overall_status Withdrawn


def test_text_layout_of_one_study(sample_xml):
    """Fixed order and labels; textblock wraps joined and bullets kept (NCT00000134: arms, outcomes, results)."""
    rec = to_record(xml_study(sample_xml, "NCT00000134"), "xml")
    labels = [ln.split(":")[0] for ln in rec.text.split("\n") if ln.endswith(":") or ": " in ln[:25]]
    order = ["Official title", "Brief summary", "Detailed description", "Conditions", "Interventions", "Arms",
             "Eligibility criteria", "Primary outcomes"]
    assert [lab for lab in labels if lab in order] == order
    assert rec.sections[:2] == ["brief_title", "official_title"]
    assert rec.has_results and rec.status == "COMPLETED" and rec.phases == ["PHASE3"]
    assert "- Drug: Ganciclovir (also: cytovene): intravenous ganciclovir induction" in rec.text
    assert "- intravenous foscarnet (Experimental): intravenous foscarnet reinduction" in rec.text
    assert "\r" not in rec.text and "  " not in rec.text
    # a textblock's hard line wraps are joined into one line per paragraph
    assert "age 18 years or older and have had AIDS and CMV retinitis" in rec.text


def test_block_text_and_vocabularies():
    legacy = ("\n        Inclusion Criteria:&\n\n          -  Age >= 18 years with\n             diabetic edema\n"
              "          -  Diagnosis\n\n        Exclusion Criteria:\n          1. Glaucoma\n").replace("&", "\r")
    assert block_text(legacy) == ("Inclusion Criteria:\n- Age >= 18 years with diabetic edema\n- Diagnosis\n"
                                  "Exclusion Criteria:\n1. Glaucoma")
    assert block_text("Inclusion Criteria:\n\n* Age \\>= 18\n* BMI \\< 30\n\nExclusion:\n\n* none", markdown=True) == (
        "Inclusion Criteria:\n- Age >= 18\n- BMI < 30\nExclusion:\n- none")
    assert block_text("Line one\\\nline two", markdown=True) == "Line one\nline two"  # CommonMark hard break
    only_official = to_record(Study("NCT00000001", official_title="Official", brief_summary="Summary."), "json")
    assert only_official.text == "Official\nBrief summary:\nSummary."
    assert normalize_status("Active, not recruiting") == "ACTIVE_NOT_RECRUITING"
    assert normalize_status("Unknown status") == normalize_status("UNKNOWN") == "UNKNOWN"
    assert normalize_phases("Phase 1/Phase 2") == normalize_phases(["PHASE1", "PHASE2"]) == ["PHASE1", "PHASE2"]
    assert normalize_phases("N/A") == ["NA"] and normalize_phases("Early Phase 1") == ["EARLY_PHASE1"]
    assert iso_date("September 14, 2015") == "2015-09-14" and iso_date("March 1995") == "1995-03"
    assert iso_date("2024-01-15") == "2024-01-15" and iso_date("soon") == ""
    assert READER.record_rank({"last_update": "1995-03"}) == 19950300
    assert nct_key("NCT00000102") == nct_key("nct00000102") != nct_key("NCT00000103")
    assert 0 <= nct_key("NCT00000102") < 2**63


# ----------------------------------------------------------------------------------------- API v2 JSON


def test_v2_study_page_and_ndjson_give_the_legacy_text(sample_xml, tmp_path):
    """The same study in both formats becomes the same text (a v2 fixture built from the legacy record)."""
    ids = ["NCT00000134", "NCT00000102", "NCT00000108"]
    studies = [xml_study(sample_xml, n) for n in ids]
    want = {s.nct_id: to_record(s, "xml").text for s in studies}
    single = tmp_path / "NCT00000134.json"
    single.write_text(json.dumps(v2_study(studies[0]), indent=2))
    pg = tmp_path / "page1.json"
    pg.write_text(page(*(v2_study(s) for s in studies)))
    nd = tmp_path / "studies.ndjson"
    nd.write_text(ndjson(*(v2_study(s) for s in studies)))
    gz = tmp_path / "studies.jsonl.gz"
    gz.write_bytes(gzip.compress(nd.read_bytes()))
    for path, n in ((single, 1), (pg, 3), (nd, 3), (gz, 3)):
        assert detect_format(path) == "ctgov", path
        records = read(path)
        assert len(records) == n and all(r.input_format == "json" for r in records), path
        for r in records:
            assert r.text == want[r.nct_id], (path, r.nct_id)
            assert r.last_update == xml_study(sample_xml, r.nct_id).last_update


def test_sniff_claims_only_v2_studies(tmp_path, sample_xml):
    pubmed = tmp_path / "pubmed.jsonl"  # the JSONL other readers take: records with a `text` field
    pubmed.write_text(json.dumps({"pmid": "1", "text": 'a "protocolSection": {} mention', "source": "medline"}) + "\n")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"text": 'quoted "protocolSection": {"x": 1}', "title": "t"}))
    wrapper = tmp_path / "sample.jsonl.gz"  # the shared sample's own shape: {"nct_id", "source", "xml"}
    wrapper.write_bytes(gzip.compress(json.dumps({"nct_id": "NCT1", "xml": "<clinical_study/>"}).encode() + b"\n"))
    patents = tmp_path / "ipg230103.zip"
    with zipfile.ZipFile(patents, "w") as z:
        z.writestr("ipg230103.xml", "<us-patent-grant/>")
    trials = tmp_path / "AllPublicXML.zip"
    with zipfile.ZipFile(trials, "w") as z:
        z.writestr("Contents.txt", "NCT00000102")
        z.writestr("NCT0000xxxx/NCT00000102.xml", sample_xml["NCT00000102"])
    assert [READER.sniff(p) for p in (pubmed, other, wrapper, patents)] == [False] * 4
    assert READER.sniff(trials)


def test_bulk_zip_streams_members_and_names_a_broken_one(sample_xml, tmp_path):
    ids = list(sample_xml)[:5]
    z = tmp_path / "AllPublicXML.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in ids:
            zf.writestr(f"{n[:7]}xxxx/{n}.xml", sample_xml[n])
        zf.writestr("NCT0000xxxx/NCT09999999.xml", "<clinical_study><id_info><nct_id>NCT09999999</nct_id>")
        zf.writestr("NCT0000xxxx/NCT09999998.xml", "<clinical_study><brief_title>No id</brief_title></clinical_study>")
        zf.writestr("NCT0000xxxx/NCT00000134.json", json.dumps(v2_study(xml_study(sample_xml, "NCT00000134"))))
    items = read(z)
    assert [r.nct_id for r in items if not isinstance(r, BadRecord)] == [*ids, "NCT00000134"]
    broken, no_id = [r for r in items if isinstance(r, BadRecord)]
    assert "NCT09999999.xml" in broken.problem and "malformed XML" in broken.problem
    assert no_id.line == 1 and "NCT09999998.xml" in no_id.problem and "<nct_id>" in no_id.problem


# -------------------------------------------------------------------------------- the tool, end to end


def test_versions_withdrawn_and_empty_through_the_tool(sample_xml, tmp_path):
    """Latest last-update date wins whatever the file order; withdrawn and description-less studies counted."""
    a, b, c = (xml_study(sample_xml, n) for n in ("NCT00000102", "NCT00000108", "NCT00000134"))
    src = tmp_path / "in"
    src.mkdir()
    (src / "a_page.json").write_text(page(
        v2_study(a, last_update="2020-01-01"), v2_study(b, last_update="2020-01-01"),
        v2_study(c, last_update="2020-01-01", status="WITHDRAWN"),
    ))
    newer = "Second version of this summary, rewritten by the sponsor in 2021 with more detail."
    (src / "b_update.ndjson").write_text(ndjson(v2_study(a, last_update="2021-05-05", summary=newer)))
    older = "An older registration of this study, read last but superseded."
    (src / "c_old.jsonl").write_text(ndjson(v2_study(b, last_update="2019-03-01", summary=older)))
    empty = v2_study(a, last_update="2020-01-01", summary="")
    empty["protocolSection"]["identificationModule"]["nctId"] = "NCT09000001"
    empty["protocolSection"]["descriptionModule"] = {"briefSummary": ""}  # title, lists and criteria only
    (src / "d_empty.json").write_text(json.dumps(empty))
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out, "--format", "auto") == 0
    rep, got = report(out), kept(out)
    assert rep["records_read"] == 6
    assert rep["dropped"] == {"superseded_version": 2, "withdrawn": 1, "no_study_description": 1}
    assert set(got) == {"NCT00000102", "NCT00000108"}
    assert newer in got["NCT00000102"]["text"] and got["NCT00000102"]["last_update"] == "2021-05-05"
    assert older not in got["NCT00000108"]["text"] and got["NCT00000108"]["last_update"] == "2020-01-01"
    assert all(r["source"] == "ctgov" for r in got.values())
    # withdrawn studies are an option: kept on request
    out2 = tmp_path / "out2"
    assert run("--input", src, "--output-dir", out2, "--no-drop-withdrawn") == 0
    assert "NCT00000134" in kept(out2) and "withdrawn" not in report(out2)["dropped"]


def test_legacy_files_and_a_newer_v2_version(sample_xml, tmp_path):
    """A directory of NCT*.xml with an API v2 copy of one study, updated later: the v2 version wins."""
    ids = ["NCT00000102", "NCT00000108", "NCT00000114"]
    src = tmp_path / "in"
    write_xml_files(sample_xml, src, ids)
    s = xml_study(sample_xml, "NCT00000108")
    newer = "Summary as posted in a 2024 update through the API."
    (src / "z_api.json").write_text(page(v2_study(s, last_update="2024-06-30", summary=newer), token=None))
    out = tmp_path / "out"
    assert run("--input", src, "--output-dir", out, "--format", "ctgov") == 0
    got = kept(out)
    assert set(got) == set(ids) and newer in got["NCT00000108"]["text"]
    assert report(out)["dropped"] == {"superseded_version": 1}


def test_bad_inputs_named_by_file_and_line_and_counted(sample_xml, tmp_path, capsys):
    s = xml_study(sample_xml, "NCT00000102")
    src = tmp_path / "in"
    src.mkdir()
    (src / "NCT00000102.xml").write_text(sample_xml["NCT00000102"].replace("</brief_title>", "</brief_titel>", 1))
    good, no_id = v2_study(s), v2_study(s, drop_id=True)
    other = v2_study(xml_study(sample_xml, "NCT00000108"))
    # line 2: a study without nctId; line 3: the download cut short
    (src / "part.ndjson").write_text(ndjson(good, no_id) + json.dumps(other)[:200])
    (src / "page.json").write_text(page(other, no_id))
    out = tmp_path / "out"
    assert run("--input", src / "NCT00000102.xml", "--output-dir", out) == 2
    assert re.search(r"NCT00000102\.xml:\d+: malformed XML", capsys.readouterr().err)
    assert run("--input", src / "part.ndjson", "--output-dir", out) == 2
    assert "part.ndjson:2: study without protocolSection.identificationModule.nctId" in capsys.readouterr().err
    # a bad study in a page is named by the line its object starts on
    second_study = [i for i, ln in enumerate(page(other, no_id).split("\n"), 1) if ln == "    {"][1]
    bad_page = [r for r in read(src / "page.json") if isinstance(r, BadRecord)]
    assert [b.line for b in bad_page] == [second_study]
    assert run("--input", src, "--output-dir", out, "--skip-bad") == 0
    rep = report(out)
    assert rep["files_bad"] == 1 and rep["bad_files"][0]["path"].endswith("NCT00000102.xml")
    assert rep["dropped"]["bad_record"] == 3
    problems = sorted((Path(b["path"]).name, b["line"], b["problem"].split(" (")[0]) for b in rep["bad_records"])
    assert problems == [
        ("page.json", bad_page[0].line, "study without protocolSection.identificationModule.nctId"),
        ("part.ndjson", 2, "study without protocolSection.identificationModule.nctId"),
        ("part.ndjson", 3, "truncated JSON line"),
    ]


def test_broken_json_files(tmp_path):
    bad = tmp_path / "cut.json"
    bad.write_text('{"studies": [\n  {"protocolSection": {"identificationModule": {"nctId": "NCT1"}}},\n  {"proto')
    with pytest.raises(BadInputError) as e:
        read(bad)
    assert e.value.path == str(bad) and e.value.line == 3 and "malformed JSON" in e.value.problem
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(BadInputError, match="empty document"):
        read(empty)
    latin = tmp_path / "latin.ndjson"
    latin.write_bytes(b'{"protocolSection": {"identificationModule": {"nctId": "NCT00000001", '
                      b'"briefTitle": "caf\xe9"}}}\n')
    (item,) = read(latin)
    assert isinstance(item, BadRecord) and item.line == 1 and "UTF-8" in item.problem
