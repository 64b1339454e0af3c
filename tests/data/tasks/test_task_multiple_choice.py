"""MedQA, MedMCQA and MMLU readers: good rows, every bad-record kind with its exact message, and
the counts by reason with skip_bad."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from megatron_biomed.data.tasks import ReadReport, TaskDataError, format_report, read_medmcqa, read_medqa, read_mmlu

OPTS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}
GOOD_MEDQA = {"question": "Which one?", "options": OPTS, "answer_idx": "C", "answer": "gamma"}

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def medqa(**changes):
    row = dict(GOOD_MEDQA, **changes)
    return {k: v for k, v in row.items() if v is not ...}


MEDQA_BAD = [
    (medqa(question=...), "missing 'question'", "missing 'question'"),
    (medqa(question="  "), "empty 'question'", "'question' is empty"),
    (medqa(question=7), "'question' not a string", "'question' must be a string, got number"),
    (medqa(options=...), "missing 'options'", "missing 'options'"),
    (medqa(options=["alpha", "beta"]), "bad 'options'",
     "'options' must be an object mapping A, B, C, D to option texts, got array"),
    (medqa(options={"A": "a", "B": "b", "C": "c"}), "wrong number of options", "expected 4 or 5 options, got 3"),
    (medqa(options={"A": "a", "B": "b", "C": "c", "E": "e"}), "bad option letters",
     "option keys must be A, B, C, D, got 'A', 'B', 'C', 'E'"),
    (medqa(options=dict(OPTS, B="")), "empty option", "option B is empty"),
    (medqa(options=dict(OPTS, D=None)), "option not a string", "option D must be a string, got null"),
    (medqa(answer_idx="E"), "answer_idx out of range", "answer_idx 'E' is not one of the options A-D"),
    (medqa(answer_idx=2), "bad answer_idx", "answer_idx must be a letter A-D, got number"),
    (medqa(answer_idx=..., answer=...), "missing 'answer_idx'",
     "missing 'answer_idx' (and no 'answer' text to match)"),
    (medqa(answer_idx=..., answer="epsilon"), "answer matches no option",
     "answer 'epsilon' matches none of the options and there is no 'answer_idx'"),
    (medqa(answer_idx=..., answer="beta", options=dict(OPTS, D="Beta")), "answer matches several options",
     "answer 'beta' matches options B, D; give 'answer_idx'"),
    (medqa(answer="beta"), "answer disagrees with answer_idx", "answer 'beta' is not option C ('gamma')"),
]


def test_medqa_fixture():
    items = read_medqa(FIXTURES / "medqa_sample.jsonl")
    assert [len(item.options) for item in items] == [4, 5, 4]
    assert [item.answer_letter for item in items] == ["B", "C", "D"]  # the last by its answer text only
    assert items[1].options[2] == "Xylase" and items[0].context == ""
    assert items[2].uid == f"{FIXTURES / 'medqa_sample.jsonl'}:3"


@pytest.mark.parametrize("row,reason,problem", MEDQA_BAD, ids=[case[1] for case in MEDQA_BAD])
def test_medqa_bad_record(write, row, reason, problem):
    # the bad row is on line 3, after a good row and a blank line
    path = write("medqa.jsonl", json.dumps(GOOD_MEDQA) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(TaskDataError) as err:
        read_medqa(path)
    assert str(err.value) == f"{path}:3: {problem}"
    assert (err.value.path, err.value.line, err.value.reason) == (str(path), 3, reason)
    report = ReadReport(str(path))
    assert len(read_medqa(path, skip_bad=True, report=report)) == 1
    assert report.skipped == {reason: 1}
    assert report.first_errors == [f"{path}:3: {problem}"]


def test_medqa_skip_bad_counts_by_reason(write):
    lines = [json.dumps(GOOD_MEDQA)] + [json.dumps(row) for row, _, _ in MEDQA_BAD] + ["{not json", "[1, 2]"]
    path = write("medqa.jsonl", "\n".join(lines) + "\n")
    report = ReadReport(str(path))
    items = read_medqa(path, skip_bad=True, report=report)
    assert len(items) == 1 and report.read == 1
    expected = Counter(reason for _, reason, _ in MEDQA_BAD) + Counter({"invalid JSON": 1, "not a JSON object": 1})
    assert report.skipped == dict(expected)
    assert report.num_skipped == len(MEDQA_BAD) + 2
    assert len(report.first_errors) == 5 and report.first_errors[0].startswith(f"{path}:2: ")
    assert format_report(report).startswith(f"read 1 item from {path}; skipped {len(MEDQA_BAD) + 2} (")


def test_medmcqa_cop_base_shifts_the_answer(write):
    rows = [{"question": f"q{i}", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop, "exp": None}
            for i, cop in enumerate([1, 2, 3])]
    path = write("medmcqa.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert [item.answer for item in read_medmcqa(path, cop_base=1)] == [0, 1, 2]
    assert [item.answer for item in read_medmcqa(path, cop_base=0)] == [1, 2, 3]
    items = read_medmcqa(FIXTURES / "medmcqa_sample.jsonl", cop_base=1)
    assert [(item.uid, item.answer_letter) for item in items] == [
        ("fixture-0001", "A"), ("fixture-0002", "D"), ("fixture-0003", "B")]
    assert items[1].options == ("Drug one", "Drug two", "Drug three", "Drug four")


@pytest.mark.parametrize("cop_base,cop,expected", [(1, 0, "1..4"), (1, 5, "1..4"), (0, 4, "0..3"), (0, -1, "0..3")])
def test_medmcqa_refuses_cop_out_of_range(write, cop_base, cop, expected):
    row = {"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop}
    path = write("medmcqa.jsonl", json.dumps(row) + "\n")
    with pytest.raises(TaskDataError) as err:
        read_medmcqa(path, cop_base=cop_base)
    assert str(err.value) == (f"{path}:1: cop {cop} out of range for cop_base={cop_base} (expected {expected}); "
                              "is cop_base right for this file?")
    report = ReadReport(str(path))
    assert read_medmcqa(path, cop_base=cop_base, skip_bad=True, report=report) == []
    assert report.skipped == {"cop out of range": 1}


def test_medmcqa_cop_base_must_be_given_as_0_or_1(write):
    path = write("medmcqa.jsonl", "")
    with pytest.raises(TypeError):
        read_medmcqa(path)  # no default on purpose
    for bad in (2, -1, True, "1"):
        with pytest.raises(TaskDataError, match="cop_base must be 0 or 1"):
            read_medmcqa(path, cop_base=bad)


def test_medmcqa_bad_records_and_report(write):
    base = {"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2, "id": "x1"}
    rows = [
        base,
        {k: v for k, v in base.items() if k != "cop"},
        dict(base, cop=None),
        {k: v for k, v in base.items() if k != "cop"},
        dict(base, cop=9),
        dict(base, cop="3"),  # a digit string is unambiguous: accepted
        dict(base, cop=2.5),
        dict(base, opc=""),
        dict(base, id=[1]),
    ]
    path = write("medmcqa.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskDataError) as err:
        read_medmcqa(path, cop_base=1)
    assert str(err.value) == f"{path}:2: missing 'cop'"
    report = ReadReport(str(path))
    items = read_medmcqa(path, cop_base=1, skip_bad=True, report=report)
    assert [item.answer for item in items] == [1, 2]
    assert report.skipped == {"missing 'cop'": 3, "cop out of range": 1, "bad 'cop'": 1, "empty 'opc'": 1,
                              "bad 'id'": 1}
    assert report.first_errors[3] == (f"{path}:5: cop 9 out of range for cop_base=1 (expected 1..4); "
                                      "is cop_base right for this file?")
    assert format_report(report) == (f"read 2 items from {path}; skipped 7 (3 missing 'cop', 1 bad 'cop', "
                                     "1 bad 'id', 1 cop out of range, 1 empty 'opc')")


MMLU_TEXT = (
    '"What is 1,2 in a list, and\nwhat follows?",three,"four, five",six,seven,B\n'  # lines 1-2
    'Plain question,a,b,c,d,A\n'                                                   # line 3
    '"Another ""quoted"" one\n\nwith a blank line inside",a,b,c,d,Q\n'             # lines 4-6, bad answer
    '\n'                                                                           # line 7, blank
    'Short row,a,b,c,D\n'                                                          # line 8
    ',a,b,c,d,A\n'                                                                 # line 9
    'Q with empty option,a,,c,d,C\n'                                               # line 10
    '"multi\nline",a,b,c,d,d\n'                                                    # lines 11-12
)


def test_mmlu_quoted_fields_keep_record_start_lines(write):
    path = write("anatomy_test.csv", MMLU_TEXT)
    with pytest.raises(TaskDataError) as err:
        read_mmlu(path)
    assert str(err.value) == f"{path}:4: answer 'Q' is not a letter A-D"
    report = ReadReport(str(path))
    items = read_mmlu(path, skip_bad=True, report=report)
    assert [item.question for item in items] == ["What is 1,2 in a list, and\nwhat follows?", "Plain question",
                                                 "multi\nline"]
    assert items[0].options == ("three", "four, five", "six", "seven") and items[0].answer == 1
    assert items[2].answer_letter == "D" and items[2].uid == f"{path}:11"
    assert report.first_errors == [
        f"{path}:4: answer 'Q' is not a letter A-D",
        f"{path}:8: expected 6 columns (question, A, B, C, D, answer), got 5",
        f"{path}:9: question is empty",
        f"{path}:10: option B is empty",
    ]
    assert report.skipped == {"bad answer": 1, "wrong number of columns": 1, "empty question": 1, "empty option": 1}


def test_mmlu_crlf_and_unterminated_quote(write):
    path = write("crlf.csv", 'one,a,b,c,d,A\r\n"two\r\nlines",a,b,c,d,B\r\nthree,a,b,c,d,X\r\n')
    with pytest.raises(TaskDataError, match=r":4: answer 'X'"):
        read_mmlu(path)
    path = write("numeric.csv", "one,a,b,c,d,2\n")
    with pytest.raises(TaskDataError, match=r":1: answer '2' is not a letter A-D \(a number is ambiguous"):
        read_mmlu(path)
    path = write("broken.csv", 'one,a,b,c,d,A\n"never closed,a,b,c,d,B\nthree,a,b,c,d,C\n')
    with pytest.raises(TaskDataError) as err:
        read_mmlu(path, skip_bad=True)  # a broken quote cannot be skipped: nothing after it is trustworthy
    assert str(err.value).startswith(f"{path}:2: malformed CSV in the record starting here: ")
