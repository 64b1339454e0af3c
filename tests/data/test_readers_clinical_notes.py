"""The clinical notes reader (MIMIC-IV-Note layout CSV and .txt notes), its placeholder normalisation and the PHI
audit, on the public PhysioNet deid corpus and MTSamples (../shared/data/clinical_notes/, see its SOURCE.md) written
into MIMIC-IV-Note layout files, and on fixtures of our own making."""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from tool_scripts import load_tool, run_pubmed_to_jsonl

from megatron_biomed.data.cleaning import CleaningConfig, expand_inputs, filter_reason
from megatron_biomed.data.cleaning.filters import flag_reasons
from megatron_biomed.data.cleaning.filters_clinical_notes import KINDS, PATTERNS, phi_kinds
from megatron_biomed.data.readers import READERS, BadInputError, BadRecord, detect_format, get_reader
from megatron_biomed.data.readers import clinical_notes as cn

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "clinical_notes"
DEID = DATA / "physionet_deid_nursing_notes_train.jsonl"
MTSAMPLES = DATA / "mtsamples_first401_train.jsonl"
# MIMIC-IV-Note 2.2 discharge.csv's columns, shuffled: the reader takes them by name
HEADER = ["text", "note_seq", "subject_id", "note_id", "storetime", "charttime", "note_type", "hadm_id"]

pubmed_to_jsonl = load_tool("pubmed_to_jsonl")


def _deid_notes() -> list[dict]:
    if not DEID.exists():
        pytest.skip(f"{DEID} is absent (the shared public data is not staged here)")
    return [json.loads(line) for line in DEID.open(encoding="utf-8")]


def write_notes_csv(path: Path, notes: list[dict], field: str) -> Path:
    """The notes as a MIMIC-IV-Note layout CSV (gzip when the name ends in .gz); note_id = patient-note."""
    rows = [HEADER] + [[n[field], n["note"], n["patient"], f"{n['patient']}-NN-{n['note']}", "", "", "NN", ""]
                       for n in notes]  # fmt: skip
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


run = run_pubmed_to_jsonl


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(a < end and start < b for a, b in spans)


def _full_date(gold: str) -> bool:
    """A gold Date span with a year (three parts: "9/3/97", "28 Oct, 88"), what the audit's date kind is for."""
    return len(re.findall(r"\d+|[A-Za-z]{3,}", gold)) >= 3


def test_placeholders_become_one_token_and_are_counted(tmp_path):
    notes = _deid_notes()
    for name in ("deid.csv", "deid.csv.gz"):
        records = list(cn.iter_notes_csv(write_notes_csv(tmp_path / name, notes, "text_deid_output")))
        assert len(records) == len(notes)
        for note, rec in zip(notes, records):
            assert rec.deid_placeholders == note["text_deid_output"].count("[**"), rec.note_id
            assert "[**" not in rec.text and rec.text.count(cn.DEID_TOKEN) == rec.deid_placeholders
            assert rec.note_id == f"{note['patient']}-NN-{note['note']}" and rec.subject_id == str(note["patient"])
    assert sum(r.deid_placeholders for r in records) > 1000
    # MIMIC-IV-Note's ___ (exactly three underscores; a longer run is a form blank), an own token, or kept as is
    text = "Name:  ___                 Unit No:   ___\nSigned: ________\n[**Hospital 1**] [**2151-7-16**]"
    assert cn.normalize_placeholders(text, "<phi>") == (
        "Name:  <phi>                 Unit No:   <phi>\nSigned: ________\n<phi> <phi>", 4)
    assert cn.normalize_placeholders(text, "") == (text, 4)


def test_phi_audit_recall_on_surrogate_phi_and_flags_on_deid_output(tmp_path):
    """Note-level recall of the phone and full-date detectors against the gold PHI spans (the notes that hold a
    span of the category), span-level figures, matches outside every gold span, and flags on deid.pl's output."""
    notes = _deid_notes()
    span_hits, span_total, note_hits, note_total = Counter(), Counter(), Counter(), Counter()
    outside = Counter()
    for note in notes:
        text = note["text"]
        found = {k: [m.span() for m in p.finditer(text)] for k, p in PATTERNS.items()}
        gold = [(s, e) for s, e, _cat, _str in note["phi_gold"]]
        outside.update(k for k, spans in found.items() for s, e in spans if not _overlaps(gold, s, e))
        per_note: dict[str, list[bool]] = {}
        for start, end, cat, string in note["phi_gold"]:
            category = "Date (full)" if cat == "Date" and _full_date(string) else cat
            kind = {"Phone": "phone", "Date (full)": "date"}.get(category)
            if kind is not None:
                hit = _overlaps(found[kind], start, end)
                span_hits[category] += hit
                span_total[category] += 1
                per_note.setdefault(category, []).append(hit)
        for category, hits in per_note.items():
            note_total[category] += 1
            note_hits[category] += any(hits)
    recall = {c: note_hits[c] / note_total[c] for c in note_total}
    print(f"\nPHI audit recall (notes) {dict(note_hits)} / {dict(note_total)}; spans {dict(span_hits)} / "
          f"{dict(span_total)}; matches outside gold spans {dict(outside)}")
    assert note_total["Phone"] >= 20 and note_total["Date (full)"] >= 30
    assert recall["Phone"] >= 0.9 and recall["Date (full)"] >= 0.8, recall  # measured 25/26, 39/43
    assert sum(outside.values()) <= 5  # measured 0
    deid = list(cn.iter_notes_csv(write_notes_csv(tmp_path / "deid.csv", notes, "text_deid_output")))
    flagged = Counter(k for r in deid for k in phi_kinds(r.text))
    print(f"PHI audit flags on deid.pl's output: {dict(flagged)} of {len(deid)} notes")
    assert sum(flagged.values()) <= 5  # measured 1 (a date deid.pl left: an impossible day of February)


# identifiers of our own making, one or two per kind, and look-alikes from clinical text that must not be flagged
PLANTED = {
    "phone": ["call her at (617) 555-0142 tomorrow", "Pager #40217 overnight", "ext. 4432 in the unit"],
    "email": ["wrote to jdoe.family+icu@example.org about it"],
    "ssn": ["SSN 078-05-1120 on the form"],
    "mrn": ["MRN: 00473829 checked", "medical record number 7734921"],
    "date": ["admitted 03/14/2151 from home", "seen on July 22, 1997 and", "scan 2151-07-16 showed",
             "born 28 Oct, 88 in"],
    "url": ["see https://portal.example.org/pt?id=7 for", "www.example-hospital.org has"],
}
LOOK_ALIKES = ["PS 10/5/40% overnight", "VT 900-1000, RR 16", "SVR 882-1326", "BP 120/80 HR 88",
               "K 4.2 Na 138 on 7/22", "dose 1-2 tabs q4-6h", "BNP 450 pg/mL", "FiO2 0.40, PEEP 5, 12/5",
               "Unit No:   [DEID]", "1.5 x 2.3 x 4.1 cm mass", "on 2151 ventilator days"]


def test_each_kind_is_found_and_look_alikes_are_not():
    for kind, texts in PLANTED.items():
        for text in texts:
            assert phi_kinds(text) == [kind], (kind, text)
    for text in LOOK_ALIKES:
        assert phi_kinds(text) == [], text
    assert set(PLANTED) == set(KINDS)
    record = {"source": "clinical_notes", "text": "Note. " + PLANTED["ssn"][0] + " " + PLANTED["url"][0]}
    assert filter_reason(record, CleaningConfig(phi_audit="drop", min_words=0)) == "phi_ssn"  # first in KINDS order
    assert filter_reason(record, CleaningConfig(phi_audit="flag", min_words=0)) is None
    assert flag_reasons(record, CleaningConfig(phi_audit="flag")) == ["phi_ssn", "phi_url"]
    assert flag_reasons(record, CleaningConfig(phi_audit="off")) == []
    assert flag_reasons({**record, "source": "medline"}, CleaningConfig(phi_audit="flag")) == []  # notes only
    with pytest.raises(ValueError, match="phi_audit must be one of"):
        CleaningConfig(phi_audit="on")


def test_tool_flags_or_drops_and_never_shows_the_matches(tmp_path, capsys):
    """End to end through tools/pubmed_to_jsonl.py (--format auto): per-kind counts in the report, kept in flag
    mode and dropped in drop mode; neither the report nor the printed output holds a planted identifier."""
    notes = _deid_notes()[:400]
    own = [{"patient": 9000 + i, "note": 1, "text": f"Family meeting held. {t}. Plan discussed at length."}
           for i, t in enumerate(t for texts in PLANTED.values() for t in texts)]
    (tmp_path / "in").mkdir()
    src = write_notes_csv(tmp_path / "in" / "notes.csv", notes + own, "text")
    texts = [n["text"].strip() for n in notes + own]
    expected = Counter(f"phi_{k}" for t in texts for k in phi_kinds(t))
    assert all(expected[f"phi_{k}"] for k in KINDS)
    secrets = [m.group() for t in texts for p in PATTERNS.values() for m in p.finditer(t)]
    common = ["--input", src, "--min-words", "0", "--no-dedup-exact"]
    assert run(*common, "--output-dir", tmp_path / "flag", "--phi-audit", "flag") == 0
    flag_out = capsys.readouterr()
    rep = json.loads((tmp_path / "flag" / "cleaning_report.json").read_text())
    assert rep["flagged"] == dict(sorted(expected.items())) and rep["records_kept"] == len(texts)
    assert rep["config"]["phi_audit"] == "flag"
    assert run(*common, "--output-dir", tmp_path / "drop", "--phi-audit", "drop") == 0
    drop_out = capsys.readouterr()
    rep_drop = json.loads((tmp_path / "drop" / "cleaning_report.json").read_text())
    dropped = Counter(f"phi_{phi_kinds(t)[0]}" for t in texts if phi_kinds(t))
    assert rep_drop["dropped"] == dict(sorted(dropped.items())) and rep_drop["flagged"] == {}
    assert rep_drop["records_kept"] == len(texts) - sum(dropped.values())
    kept = [json.loads(line) for line in (tmp_path / "drop" / "notes.csv.jsonl").read_text().splitlines()]
    assert not any(phi_kinds(r["text"]) for r in kept) and kept[0]["source"] == "clinical_notes"
    shown = "".join([flag_out.out, flag_out.err, drop_out.out, drop_out.err,
                     *(p.read_text() for p in tmp_path.glob("*/cleaning_report.json"))])  # fmt: skip
    assert "phi_phone" in shown and len(secrets) >= 20
    leaked = sum(s in shown for s in secrets)  # a count: a failure must not print them either
    assert leaked == 0, f"{leaked} matched identifiers appear in the report or output"
    assert run(*common, "--output-dir", tmp_path / "off", "--phi-audit", "off") == 0
    assert json.loads((tmp_path / "off" / "cleaning_report.json").read_text())["flagged"] == {}


def test_bad_rows_are_named_by_line_and_counted_with_skip_bad(tmp_path, capsys):
    head = "note_id,subject_id,hadm_id,note_type,charttime,text\n".encode()
    good = b'n1,1,11,DS,2151-01-01,"first note\nspans three\nlines [**Hospital 1**]"\n'  # lines 2-4
    short = b"n2,2,22,DS,only five\n"  # line 5
    bad_utf8 = b'n3,3,33,DS,2151-01-02,"caf\xe9 au lait"\n'  # line 6
    tail = b'n4,4,44,DS,2151-01-03,"last note ___"\n'  # line 7
    path = tmp_path / "notes.csv"
    path.write_bytes(head + good + short + bad_utf8 + tail)
    items = list(cn.iter_notes_csv(path))
    bad = [(i.line, i.problem) for i in items if isinstance(i, BadRecord)]
    assert bad == [(5, "expected 6 columns as in the header, got 5"), (6, "record is not valid UTF-8")]
    assert [(r.note_id, r.deid_placeholders) for r in items if not isinstance(r, BadRecord)] == [("n1", 1), ("n4", 1)]

    assert run("--input", path, "--output-dir", tmp_path / "a", "--format", "clinical_notes") == 2
    assert f"{path}:5: expected 6 columns" in capsys.readouterr().err
    assert run("--input", path, "--output-dir", tmp_path / "b", "--skip-bad", "--min-words", "0") == 0
    rep = json.loads((tmp_path / "b" / "cleaning_report.json").read_text())
    assert rep["dropped"] == {"bad_record": 2} and rep["records_kept"] == 2
    assert [b["line"] for b in rep["bad_records"]] == [5, 6]

    broken = tmp_path / "broken.csv"  # an unterminated quote: the rest of the file is one field, the file is broken
    broken.write_bytes(head + good + b'n5,5,55,DS,2151-01-04,"never closed\nmore text\n')
    with pytest.raises(BadInputError) as err:
        list(cn.iter_notes_csv(broken))
    assert err.value.line == 5 and "malformed CSV" in err.value.problem
    assert run("--input", broken, "--output-dir", tmp_path / "c") == 2
    assert f"{broken}:5: malformed CSV" in capsys.readouterr().err
    assert run("--input", broken, "--output-dir", tmp_path / "d", "--skip-bad") == 0
    assert json.loads((tmp_path / "d" / "cleaning_report.json").read_text())["bad_files"][0]["line"] == 5

    no_text = tmp_path / "nocol.csv"
    no_text.write_text("note_id,subject_id,hadm_id,note_type,charttime,body\nn1,1,1,DS,t,x\n")
    with pytest.raises(BadInputError, match="lacks column.s. text"):
        list(cn.iter_notes_csv(no_text))
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gzip.compress(head + good * 400)[:-30])
    with pytest.raises(BadInputError, match="cannot read the file"):
        list(cn.iter_notes_csv(truncated))


def test_same_note_id_twice_keeps_the_later_file(tmp_path):
    head = "note_id,subject_id,hadm_id,note_type,charttime,text\n"
    (tmp_path / "a.csv").write_text(head + 'n1,1,1,DS,t,"old text of the note"\nn2,2,2,DS,t,"another note"\n')
    (tmp_path / "b.csv").write_text(head + 'n1,1,1,DS,t,"new text of the note"\n')
    assert run("--input", tmp_path, "--output-dir", tmp_path / "o", "--min-words", "0") == 0
    rep = json.loads((tmp_path / "o" / "cleaning_report.json").read_text())
    assert rep["dropped"] == {"duplicate_note_id": 1} and rep["records_kept"] == 2
    assert json.loads((tmp_path / "o" / "b.csv.jsonl").read_text())["text"] == "new text of the note"


def test_txt_notes_sniff_and_directories(tmp_path, monkeypatch):
    if not MTSAMPLES.exists():
        pytest.skip(f"{MTSAMPLES} is absent (the shared public data is not staged here)")
    reports = [json.loads(line) for line in MTSAMPLES.open(encoding="utf-8")][:12]
    notes = tmp_path / "notes"
    notes.mkdir()
    for r in reports:
        (notes / f"mts_{r['id']}.txt").write_text(r["transcription"] + "\nSigned: ___\n", encoding="utf-8")
    first = notes / f"mts_{reports[0]['id']}.txt"
    rec = next(cn.iter_notes_txt(first))
    assert rec.text == (reports[0]["transcription"].strip() + "\nSigned: [DEID]") and rec.deid_placeholders == 1
    assert cn.note_key(rec.to_dict()) is None  # a file name is no identity
    assert run("--input", f"{notes}/*.txt", "--output-dir", tmp_path / "o", "--min-words", "0") == 0
    rep = json.loads((tmp_path / "o" / "cleaning_report.json").read_text())
    assert rep["records_read"] == 12 and rep["format"] == "auto"
    (notes / "bad.txt").write_bytes(b"caf\xe9\n")
    assert isinstance(next(cn.iter_notes_txt(notes / "bad.txt")), BadRecord)
    monkeypatch.setattr(cn, "MAX_TXT_BYTES", 10)
    with pytest.raises(BadInputError, match="too large for one note"):
        list(cn.iter_notes_txt(first))

    # sniff: the note CSVs and .txt; not a PMC bulk file list, not XML; no other reader claims these files
    (tmp_path / "d").mkdir()
    csv_path = write_notes_csv(tmp_path / "d" / "notes.csv.gz", [{"patient": 1, "note": 1, "text": "x"}], "text")
    filelist = tmp_path / "d" / "oa_comm_xml.PMC000xxxxxx.baseline.2024-06-18.filelist.csv"
    filelist.write_text("Article File,Article Citation,AccessionID,LastUpdated (YYYY-MM-DD HH:MM:SS),PMID,License\n")
    (tmp_path / "d" / "README.txt").write_text("PubMed baseline README\n")
    (tmp_path / "d" / "a.xml").write_text("<PubmedArticleSet/>")
    assert cn.sniff(csv_path) and cn.sniff(first) and not cn.sniff(filelist) and not cn.sniff(tmp_path / "d/a.xml")
    assert detect_format(csv_path) == detect_format(first) == "clinical_notes"
    for name, reader in READERS.items():
        if name != "clinical_notes" and reader.sniff is not None:
            assert not any(reader.sniff(p) for p in (csv_path, first, filelist)), name
    # a directory contributes note CSVs and XML, not a file list or a README (.txt notes are given by a glob)
    assert sorted(p.name for p in expand_inputs([str(tmp_path / "d")])) == ["a.xml", "notes.csv.gz"]
    assert get_reader("clinical_notes").duplicate_reason == "duplicate_note_id"
