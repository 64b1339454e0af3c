"""What all task readers share: missing files, gzip, bytes that are not UTF-8, format dispatch,
report accumulation and the one-line summary."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from megatron_biomed.data.tasks import (
    READERS,
    MultipleChoiceItem,
    ReadReport,
    TaskDataError,
    format_report,
    read_medqa,
    read_mmlu,
    read_pubmedqa,
    read_task_file,
)

ROW = {"question": "q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "A"}

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.jsonl"
    for reader in READERS.values():
        kw = {"cop_base": 1} if reader is READERS["medmcqa"] else {}
        with pytest.raises(TaskDataError) as err:
            reader(missing, **kw)
        assert str(err.value) == f"{missing}: no such file"
    with pytest.raises(TaskDataError, match="is a directory, expected a file"):
        read_medqa(tmp_path)


def test_gzip_is_read_transparently(write):
    text = (FIXTURES / "medqa_sample.jsonl").read_text(encoding="utf-8")
    assert read_medqa(write("medqa.jsonl.gz", text))[1].options[2] == "Xylase"
    csv_gz = write("anatomy_dev.csv.gz", '"a,\nb",1,2,3,4,C\nx,1,2,3,4,Z\n')
    with pytest.raises(TaskDataError, match=r"csv\.gz:3: answer 'Z'"):
        read_mmlu(csv_gz)
    pqa = {"1": {"QUESTION": "q", "CONTEXTS": ["c"], "final_decision": "no"}}
    assert read_pubmedqa(write("pqal.json.gz", json.dumps(pqa)))[0].label_name == "no"
    truncated = write("truncated.jsonl", gzip.compress(json.dumps(ROW).encode() * 100 + b"\n")[:-12])
    with pytest.raises(TaskDataError, match=r"truncated\.jsonl:1: cannot read the file past this line"):
        read_medqa(truncated, skip_bad=True)  # a cut-off gzip stream is fatal, not a skippable record


def test_invalid_utf8_bom_and_blank_lines(write):
    path = write("medqa.jsonl", b"\xef\xbb\xbf" + json.dumps(ROW).encode() + b"\n  \n"
                 + b'{"question": "caf\xe9", "options": {}}\n' + json.dumps(ROW).encode() + b"\n")
    with pytest.raises(TaskDataError) as err:
        read_medqa(path)
    assert str(err.value) == f"{path}:3: line is not valid UTF-8"
    report = ReadReport(str(path))
    assert len(read_medqa(path, skip_bad=True, report=report)) == 2
    assert report.skipped == {"invalid UTF-8": 1}
    csv_path = write("bad.csv", b"ok,a,b,c,d,A\ncaf\xe9,a,b,c,d,B\n")
    with pytest.raises(TaskDataError, match=r"bad\.csv:2: record is not valid UTF-8"):
        read_mmlu(csv_path)
    with pytest.raises(TaskDataError, match=r"bad\.json:2: not valid UTF-8"):
        read_pubmedqa(write("bad.json", b'{\n"1": "caf\xe9"}'))


def test_read_task_file_dispatch(write):
    path = write("medqa.jsonl", json.dumps(ROW) + "\n")
    assert read_task_file(path, "medqa") == [MultipleChoiceItem("q", ("a", "b", "c", "d"), 0, uid=f"{path}:1")]
    medmcqa = write("medmcqa.jsonl", json.dumps({"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d",
                                                 "cop": 0}) + "\n")
    assert read_task_file(medmcqa, "medmcqa", cop_base=0)[0].answer == 0
    assert set(READERS) >= {"medqa", "medmcqa", "mmlu", "pubmedqa", "bioasq", "sft", "preference",
                            "mimic_discharge", "bc5cdr_re", "kd_dti_re", "ddi_re", "meqsum",
                            "chemprot", "gad", "biosses", "hoc", "conll", "pubtator"}
    with pytest.raises(TaskDataError) as err:
        read_task_file(path, "medqa_v2")
    assert str(err.value) == "unknown task format 'medqa_v2'; known: " + ", ".join(READERS)
    assert str(err.value).startswith("unknown task format 'medqa_v2'; known: medqa, medmcqa, mmlu, pubmedqa, ")


def test_report_accumulates_and_formats(write):
    good, bad = json.dumps(ROW), json.dumps(dict(ROW, answer_idx="F"))
    report = ReadReport("")
    read_medqa(write("a.jsonl", f"{good}\n{bad}\n"), skip_bad=True, report=report)
    read_medqa(write("b.jsonl", f"{bad}\n{good}\n{{}}\n"), skip_bad=True, report=report)
    assert report.path.endswith("a.jsonl")  # an empty path is filled in by the first read
    assert report.read == 2 and report.num_skipped == 3
    assert report.skipped == {"answer_idx out of range": 2, "missing 'question'": 1}
    assert format_report(report) == (f"read 2 items from {report.path}; "
                                     "skipped 3 (2 answer_idx out of range, 1 missing 'question')")
    assert format_report(ReadReport("x.jsonl", read=1)) == "read 1 item from x.jsonl"


def test_records_refuse_impossible_values():
    with pytest.raises(ValueError):
        MultipleChoiceItem("q", ("a", "b"), 2)
    with pytest.raises(ValueError):
        MultipleChoiceItem("q", ("a",), 0)
