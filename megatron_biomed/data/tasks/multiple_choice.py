"""Readers for the multiple-choice benchmarks: MedQA (JSONL), MedMCQA (JSON lines) and the MMLU
medical subjects (hendrycks CSV). Each returns :class:`MultipleChoiceItem` with a 0-based answer."""

from __future__ import annotations

import os

from megatron_biomed.data.tasks._fields import (
    BadRecord,
    check_text,
    json_kind,
    optional_text,
    record_uid,
    require_text,
    short,
)
from megatron_biomed.data.tasks.errors import ReadReport, TaskDataError
from megatron_biomed.data.tasks.records import LETTERS, MultipleChoiceItem
from megatron_biomed.data.tasks.source_files import Collector, has_bad_bytes, iter_csv, iter_jsonl

MEDQA_NUM_OPTIONS = (4, 5)
MEDMCQA_OPTION_KEYS = ("opa", "opb", "opc", "opd")
MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _lettered_options(row: dict) -> tuple[str, ...]:
    if "options" not in row:
        raise BadRecord("missing 'options'")
    options = row["options"]
    if not isinstance(options, dict):
        raise BadRecord("bad 'options'", f"'options' must be an object mapping A, B, C, D to option texts, "
                                         f"got {json_kind(options)}")
    if len(options) not in MEDQA_NUM_OPTIONS:
        raise BadRecord("wrong number of options", f"expected 4 or 5 options, got {len(options)}")
    letters = LETTERS[:len(options)]
    if set(options) != set(letters):
        raise BadRecord("bad option letters", f"option keys must be {', '.join(letters)}, "
                                              f"got {', '.join(map(repr, options))}")
    return tuple(_option_text(options[letter], letter) for letter in letters)


def _option_text(value: object, letter: str) -> str:
    try:
        return check_text(value, f"option {letter}")
    except BadRecord as e:
        raise BadRecord("empty option" if e.reason.startswith("empty") else "option not a string", e.problem) from None


def _letter_index(value: object, n: int, name: str) -> int:
    last = LETTERS[n - 1]
    if not isinstance(value, str):
        raise BadRecord(f"bad {name}", f"{name} must be a letter A-{last}, got {json_kind(value)}")
    letter = value.strip().upper()
    if len(letter) != 1 or letter not in LETTERS[:n]:
        raise BadRecord(f"{name} out of range", f"{name} {short(value)} is not one of the options A-{last}")
    return LETTERS.index(letter)


def _medqa_item(row: dict, default_uid: str) -> MultipleChoiceItem:
    question = require_text(row, "question")
    options = _lettered_options(row)
    answer_text = optional_text(row, "answer")
    if row.get("answer_idx") is not None:
        answer = _letter_index(row["answer_idx"], len(options), "answer_idx")
        if answer_text and not _same_text(answer_text, options[answer]):
            raise BadRecord("answer disagrees with answer_idx",
                            f"answer {short(answer_text)} is not option {LETTERS[answer]} ({short(options[answer])})")
    elif answer_text.strip():
        matches = [i for i, option in enumerate(options) if _same_text(answer_text, option)]
        if not matches:
            raise BadRecord("answer matches no option", f"answer {short(answer_text)} matches none of the options "
                                                        "and there is no 'answer_idx'")
        if len(matches) > 1:
            raise BadRecord("answer matches several options",
                            f"answer {short(answer_text)} matches options "
                            f"{', '.join(LETTERS[i] for i in matches)}; give 'answer_idx'")
        answer = matches[0]
    else:
        raise BadRecord("missing 'answer_idx'", "missing 'answer_idx' (and no 'answer' text to match)")
    return MultipleChoiceItem(question=question, options=options, answer=answer, uid=record_uid(row, default_uid))


def read_medqa(path: str | os.PathLike, *, skip_bad: bool = False,
               report: ReadReport | None = None) -> list[MultipleChoiceItem]:
    """MedQA JSONL: ``{"question", "options": {"A": .., "D"/"E": ..}, "answer_idx": "A".., "answer"}``.

    ``answer_idx`` gives the answer; when it is absent the ``answer`` text must match exactly one
    option (ignoring case and spacing), and when both are present they must agree.
    """
    col = Collector(path, skip_bad, report)
    items = []
    for line, row in iter_jsonl(col):
        try:
            items.append(_medqa_item(row, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items


def _medmcqa_item(row: dict, cop_base: int, default_uid: str) -> MultipleChoiceItem:
    question = require_text(row, "question")
    options = tuple(require_text(row, key) for key in MEDMCQA_OPTION_KEYS)
    cop = row.get("cop")
    if cop is None:
        raise BadRecord("missing 'cop'")
    if isinstance(cop, str) and cop.strip().isascii() and cop.strip().isdigit():
        cop = int(cop)
    if isinstance(cop, bool) or not isinstance(cop, int):
        raise BadRecord("bad 'cop'", f"'cop' must be an integer, got {json_kind(cop)} {short(cop)}")
    low, high = cop_base, cop_base + len(options) - 1
    if not low <= cop <= high:
        raise BadRecord("cop out of range", f"cop {cop} out of range for cop_base={cop_base} (expected {low}..{high});"
                                            " is cop_base right for this file?")
    return MultipleChoiceItem(question=question, options=options, answer=cop - cop_base,
                              uid=record_uid(row, default_uid))


def read_medmcqa(path: str | os.PathLike, *, cop_base: int, skip_bad: bool = False,
                 report: ReadReport | None = None) -> list[MultipleChoiceItem]:
    """MedMCQA JSON lines: ``{"question", "opa", "opb", "opc", "opd", "cop", "exp"?, "id"?}``.

    ``cop_base`` has no default because both conventions are in circulation: the original release
    numbers the correct option 1..4, the Hugging Face dataset 0..3. A value outside the range of
    the given base is a bad record; a file read with the wrong base is only caught when such a
    value appears, so check ``report.skipped`` for ``"cop out of range"``.
    """
    if isinstance(cop_base, bool) or cop_base not in (0, 1):
        raise TaskDataError(f"cop_base must be 0 or 1, got {cop_base!r} (the original MedMCQA release "
                            "is 1-based, the Hugging Face dataset 0-based)", path=str(path))
    col = Collector(path, skip_bad, report)
    items = []
    for line, row in iter_jsonl(col):
        try:
            items.append(_medmcqa_item(row, cop_base, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items


def _mmlu_item(fields: list[str], uid: str) -> MultipleChoiceItem:
    if len(fields) != len(MMLU_COLUMNS):
        raise BadRecord("wrong number of columns", f"expected {len(MMLU_COLUMNS)} columns "
                                                   f"({', '.join(MMLU_COLUMNS)}), got {len(fields)}")
    if has_bad_bytes(*fields):
        raise BadRecord("invalid UTF-8", "record is not valid UTF-8")
    question = check_text(fields[0], "question")
    options = tuple(_option_text(text, letter) for text, letter in zip(fields[1:5], LETTERS))
    answer = fields[5].strip().upper()
    if len(answer) != 1 or answer not in LETTERS[:4]:
        hint = " (a number is ambiguous: 0- or 1-based? convert it to a letter first)" if answer.isdigit() else ""
        raise BadRecord("bad answer", f"answer {short(fields[5])} is not a letter A-D{hint}")
    return MultipleChoiceItem(question=question, options=options, answer=LETTERS.index(answer), uid=uid)


def read_mmlu(path: str | os.PathLike, *, skip_bad: bool = False,
              report: ReadReport | None = None) -> list[MultipleChoiceItem]:
    """One MMLU subject file in the hendrycks layout: CSV without header, ``question,A,B,C,D,answer``
    with the answer as a letter. Messages give the line where the CSV record starts. A broken
    quote ends the read even with ``skip_bad``: the records after it cannot be trusted."""
    col = Collector(path, skip_bad, report)
    items = []
    for line, fields in iter_csv(col):
        try:
            items.append(_mmlu_item(fields, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items
