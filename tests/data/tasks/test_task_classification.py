"""PubMedQA and BioASQ readers: record-key line numbers in a whole-file JSON dict, the yes/no path
of BioASQ (golden JSON and JSONL), type filtering, and every bad-record kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_biomed.data.tasks import (
    BIOASQ_YESNO_LABELS,
    ClassificationItem,
    ReadReport,
    TaskDataError,
    read_bioasq,
    read_pubmedqa,
)

GOOD_PQA = {"QUESTION": "Does it work?", "CONTEXTS": ["First part.", "Second part."], "LABELS": ["A", "B"],
            "final_decision": "maybe", "LONG_ANSWER": "Perhaps."}

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pubmedqa_text(records: dict) -> str:
    """Pretty-printed like ori_pqal.json (indent=4), so each PMID key starts its own line."""
    return json.dumps(records, indent=4)


def key_line(text: str, pmid: str) -> int:
    return text[:text.index(f'"{pmid}": ')].count("\n") + 1


def test_pubmedqa_items(write):
    records = {"111": GOOD_PQA, "222": dict(GOOD_PQA, final_decision="Yes", LONG_ANSWER=None, LABELS=None)}
    items = read_pubmedqa(write("pqal.json", pubmedqa_text(records)))
    passages = ("First part.", "Second part.")
    assert items == [
        ClassificationItem("Does it work?", "First part. Second part.", 2, ("yes", "no", "maybe"), "Perhaps.", "111",
                           passages, ("A", "B")),
        ClassificationItem("Does it work?", "First part. Second part.", 0, ("yes", "no", "maybe"), "", "222",
                           passages, ()),
    ]


def test_item_contexts_default_to_the_context():
    item = ClassificationItem("Q?", "one passage", 0, ("yes", "no"))
    assert item.contexts == ("one passage",)
    assert ClassificationItem("Q?", "", 0, ("yes", "no")).contexts == ()
    assert ClassificationItem("Q?", "a b", 0, ("yes", "no"), contexts=["a", "b"]).contexts == ("a", "b")


PQA_BAD = [
    ({k: v for k, v in GOOD_PQA.items() if k != "QUESTION"}, "missing 'QUESTION'", "missing 'QUESTION'"),
    (dict(GOOD_PQA, QUESTION=""), "empty 'QUESTION'", "'QUESTION' is empty"),
    ({k: v for k, v in GOOD_PQA.items() if k != "CONTEXTS"}, "missing 'CONTEXTS'", "missing 'CONTEXTS'"),
    (dict(GOOD_PQA, CONTEXTS="one string"), "bad 'CONTEXTS'", "'CONTEXTS' must be a list of strings, got string"),
    (dict(GOOD_PQA, CONTEXTS=[]), "empty 'CONTEXTS'", "'CONTEXTS' is empty"),
    (dict(GOOD_PQA, final_decision="perhaps"), "bad final_decision",
     "final_decision 'perhaps' is not one of yes, no, maybe"),
    ({k: v for k, v in GOOD_PQA.items() if k != "final_decision"}, "missing 'final_decision'",
     "missing 'final_decision'"),
    (dict(GOOD_PQA, LONG_ANSWER=["x"]), "'LONG_ANSWER' not a string", "'LONG_ANSWER' must be a string, got array"),
    (["not", "a", "dict"], "not a JSON object", "expected a JSON object, got array"),
    (dict(GOOD_PQA, LABELS="A"), "bad 'LABELS'", "'LABELS' must be a list of strings, got string"),
]


@pytest.mark.parametrize("record,reason,problem", PQA_BAD, ids=[case[1] for case in PQA_BAD])
def test_pubmedqa_bad_record(write, record, reason, problem):
    records = {"100": GOOD_PQA, "200": GOOD_PQA, "300": record, "400": GOOD_PQA}
    text = pubmedqa_text(records)
    path = write("pqal.json", text)
    with pytest.raises(TaskDataError) as err:
        read_pubmedqa(path)
    assert str(err.value) == f"{path}:{key_line(text, '300')}: record '300': {problem}"
    report = ReadReport(str(path))
    assert [item.uid for item in read_pubmedqa(path, skip_bad=True, report=report)] == ["100", "200", "400"]
    assert report.skipped == {reason: 1}


def test_pubmedqa_duplicate_pmid_and_compact_layout(write):
    good = json.dumps(GOOD_PQA)
    text = '{"1": ' + good + ',\n"2": ' + good + ',\n\n  "1": ' + good + "}\n"
    path = write("dup.json", text)
    with pytest.raises(TaskDataError) as err:
        read_pubmedqa(path)
    assert str(err.value) == f"{path}:4: record '1': duplicate PMID (appears earlier in the file)"
    report = ReadReport(str(path))
    assert len(read_pubmedqa(path, skip_bad=True, report=report)) == 2
    assert report.skipped == {"duplicate PMID": 1}


@pytest.mark.parametrize("text,line,problem", [
    ("", None, "empty file, expected a JSON document"),
    ("[1, 2]", 1, "expected a JSON object mapping PMID to item, found '['"),
    ('{\n"1": {"QUESTION": "q",\n"CONTEXTS": ["c"] "x": 1}}', 3, "invalid JSON: Expecting ',' delimiter (column 19)"),
    ('{\n"1": {}\n"2": {}}', 3, "invalid JSON: expected ',' or '}' after the object member, found '\"' (column 1)"),
    ('{"1": {}} trailing', 1, "invalid JSON: extra data after the top-level JSON value, found 't' (column 11)"),
    ('{\n"1": ', 2, "invalid JSON: Expecting value (column 6)"),
])
def test_pubmedqa_broken_json_is_fatal_even_with_skip_bad(write, text, line, problem):
    path = write("broken.json", text)
    with pytest.raises(TaskDataError) as err:
        read_pubmedqa(path, skip_bad=True)
    assert str(err.value) == (f"{path}:{line}: {problem}" if line else f"{path}: {problem}")


def test_bioasq_golden_yesno_fixture():
    path = FIXTURES / "bioasq_yesno_golden.json"
    report = ReadReport(str(path))
    items = read_bioasq(path, report=report)
    assert items == [
        ClassificationItem("Is the invented protein FIX1 expressed in the toy organ?",
                           "FIX1 is expressed. In the toy organ.", 0, BIOASQ_YESNO_LABELS,
                           "Yes, FIX1 is expressed there in this fixture.", "fixture00000000000000001",
                           ("FIX1 is expressed.", "In the toy organ.")),
        ClassificationItem("Does the made-up drug cure the made-up disease?", "The drug failed.", 1,
                           BIOASQ_YESNO_LABELS, "No, not in this fixture.", "fixture00000000000000003",
                           ("The drug failed.",)),
    ]
    assert report.read == 2 and report.skipped == {"type factoid not requested": 1}
    both = read_bioasq(path, types=("yesno", "factoid"))
    assert isinstance(both[1], dict) and both[1]["exact_answer"] == [["FIXG2"]]
    assert read_bioasq(path, types="factoid")[0]["id"] == "fixture00000000000000002"


YESNO = {"body": "Is it?", "type": "yesno", "exact_answer": "yes", "snippets": [{"text": "It is."}], "id": "q0"}

BIOASQ_BAD = [
    (dict(YESNO, exact_answer="maybe"), "bad exact_answer", "exact_answer 'maybe' is not 'yes' or 'no'"),
    (dict(YESNO, exact_answer=["yes", "no"]), "bad exact_answer", "exact_answer ['yes', 'no'] is not 'yes' or 'no'"),
    ({k: v for k, v in YESNO.items() if k != "exact_answer"}, "missing 'exact_answer'", "missing 'exact_answer'"),
    (dict(YESNO, body=""), "empty 'body'", "'body' is empty"),
    (dict(YESNO, type="boolean"), "unknown type", "type 'boolean' is not one of yesno, factoid, list, summary"),
    ({k: v for k, v in YESNO.items() if k != "type"}, "missing 'type'", "missing 'type'"),
    (dict(YESNO, snippets=[{"txt": "x"}]), "bad snippet", "snippet 0 must be an object with a string 'text'"),
    (dict(YESNO, snippets="x"), "bad 'snippets'", "'snippets' must be a list, got string"),
    (dict(YESNO, ideal_answer=3), "bad 'ideal_answer'", "'ideal_answer' must be a string or a list of strings, "
                                                        "got number"),
    ("a string", "not a JSON object", "expected a JSON object, got string"),
]


@pytest.mark.parametrize("row,reason,problem", BIOASQ_BAD, ids=[f"{i}-{case[1]}" for i, case in enumerate(BIOASQ_BAD)])
def test_bioasq_bad_record_jsonl(write, row, reason, problem):
    lines = [YESNO, {"body": "Which?", "type": "factoid", "id": "q1"}, row, dict(YESNO, exact_answer=[["NO"]])]
    path = write("bioasq.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(TaskDataError) as err:
        read_bioasq(path)
    assert str(err.value) == f"{path}:3: {problem}"
    report = ReadReport(str(path))
    items = read_bioasq(path, skip_bad=True, report=report)
    assert [item.label_name for item in items] == ["yes", "no"]
    assert report.skipped == {reason: 1, "type factoid not requested": 1}
    assert report.first_errors == [f"{path}:3: {problem}"]


def test_bioasq_golden_lines_and_layouts(write):
    questions = [YESNO, dict(YESNO, exact_answer="perhaps", id="q9")]
    text = '{"questions": [\n  ' + json.dumps(YESNO) + ',\n\n  ' + json.dumps(questions[1]) + '\n]}\n'
    path = write("golden.json", text)
    with pytest.raises(TaskDataError) as err:
        read_bioasq(path)
    assert str(err.value) == f"{path}:4: exact_answer 'perhaps' is not 'yes' or 'no'"
    compact = write("compact.json", json.dumps({"questions": questions}))  # golden on one line
    assert len(read_bioasq(compact, skip_bad=True)) == 1
    jsonl_named_json = write("questions.json", "".join(json.dumps(q) + "\n" for q in questions))
    with pytest.raises(TaskDataError, match=":2: exact_answer 'perhaps'"):
        read_bioasq(jsonl_named_json)
    with pytest.raises(TaskDataError, match="no 'questions' list"):
        read_bioasq(write("other.json", '{\n"data": []\n}'))
    with pytest.raises(TaskDataError, match=r":1: 'questions' must be a list, got object"):
        read_bioasq(write("other2.json", '{"questions": {}}'))


def test_bioasq_unknown_requested_type(write):
    with pytest.raises(TaskDataError, match=r"unknown BioASQ question type\(s\) 'yes_no'; known: yesno, factoid"):
        read_bioasq(write("q.jsonl", ""), types=("yes_no",))
