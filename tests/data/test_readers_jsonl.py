"""The jsonl source reader: records with a text field (or title/abstract), the source kept when it names a reader,
bad lines named by line, and a sniff that leaves other formats' files alone."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from megatron_biomed.data.readers import BadRecord, detect_format, get_reader
from megatron_biomed.data.readers.jsonl import iter_jsonl, sniff

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "pubmed_abstracts" / "combined" / "pubmed_abstracts_shared.jsonl"


def _write(path: Path, rows: list) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    return path


def test_records_sources_and_bad_lines(tmp_path):
    p = _write(tmp_path / "a.jsonl.gz", [
        {"pmid": "7", "version": 1, "text": "T\nA", "source": "medline", "abstract": "A"},
        {"title": "Only title", "abstract": "and abstract", "source": "bc5cdr_train"},
        "{broken",
        [1, 2],
        {"id": "x", "body": "no text"},
    ])
    items = list(iter_jsonl(p))
    a, b = items[0].to_dict(), items[1].to_dict()
    assert a["source"] == "medline" and a["text"] == "T\nA" and a["pmid"] == "7"  # a registered reader's name stays
    assert b["source"] == "jsonl" and b["origin"] == "bc5cdr_train" and b["text"] == "Only title\nand abstract"
    assert [(x.line, x.problem.split(":")[0]) for x in items[2:]] == [
        (3, "not valid JSON"), (4, "a JSON list, not an object"), (5, "no 'text' field (nor 'title'/'abstract')")]
    assert all(isinstance(x, BadRecord) for x in items[2:])
    reader = get_reader("jsonl")
    assert reader.record_key({"pmid": "7"}) == reader.record_key({"pmid": 7}) != reader.record_key({"pmid": "8"})
    assert reader.record_key({"text": "no id"}) is None and 0 <= reader.record_key({"id": "x"}) < 2**63


def test_sniff_takes_text_records_only(tmp_path):
    assert sniff(_write(tmp_path / "ok.jsonl", [{"text": "t"}]))
    assert sniff(_write(tmp_path / "ok.json", [{"text": "t"}]))
    assert not sniff(_write(tmp_path / "study.json", [{"protocolSection": {}, "text": "t"}]))  # ClinicalTrials.gov
    assert not sniff(_write(tmp_path / "other.jsonl", [{"note_id": 1}]))
    assert not sniff(_write(tmp_path / "x.csv", [{"text": "t"}]))
    (tmp_path / "pretty.json").write_text('{\n "text": "t"\n}\n')
    assert not sniff(tmp_path / "pretty.json")
    assert detect_format(tmp_path / "ok.jsonl") == "jsonl"


def test_shared_pubmed_abstracts():
    if not SHARED.is_file():
        pytest.skip(f"shared PubMed JSONL not staged at {SHARED}")
    assert detect_format(SHARED) == "jsonl"
    n = 0
    for rec in iter_jsonl(SHARED):
        assert not isinstance(rec, BadRecord) and rec.text.strip()
        n += 1
    assert n == 6334  # SOURCE.md: 6334 docs
