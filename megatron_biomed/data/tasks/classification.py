"""Readers for the question-over-context benchmarks: PubMedQA (PQA-L, ``ori_pqal.json`` layout)
and BioASQ Task B (golden JSON or JSONL). Yes/no/maybe answers become :class:`ClassificationItem`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

from megatron_biomed.data.tasks._fields import (
    BadRecord,
    json_kind,
    optional_text,
    record_uid,
    require_text,
    short,
)
from megatron_biomed.data.tasks.errors import ReadReport, TaskDataError
from megatron_biomed.data.tasks.records import ClassificationItem
from megatron_biomed.data.tasks.source_files import Collector, JsonDocument, first_line, iter_jsonl

PUBMEDQA_LABELS = ("yes", "no", "maybe")
BIOASQ_YESNO_LABELS = ("yes", "no")
BIOASQ_TYPES = ("yesno", "factoid", "list", "summary")


def _text_list(value: object, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRecord(f"bad {name}", f"{name} must be a list of strings, got {json_kind(value)}")
    return value


def _pubmedqa_item(pmid: str, record: object) -> ClassificationItem:
    if not isinstance(record, dict):
        raise BadRecord("not a JSON object", f"expected a JSON object, got {json_kind(record)}")
    question = require_text(record, "QUESTION")
    if "CONTEXTS" not in record:
        raise BadRecord("missing 'CONTEXTS'")
    contexts = _text_list(record["CONTEXTS"], "'CONTEXTS'")
    if not any(c.strip() for c in contexts):
        raise BadRecord("empty 'CONTEXTS'", "'CONTEXTS' is empty")
    decision = require_text(record, "final_decision")
    if decision.strip().lower() not in PUBMEDQA_LABELS:
        raise BadRecord("bad final_decision", f"final_decision {short(decision)} is not one of yes, no, maybe")
    labels = record.get("LABELS") or []
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise BadRecord("bad 'LABELS'", f"'LABELS' must be a list of strings, got {json_kind(labels)}")
    return ClassificationItem(question=question, context=" ".join(contexts),
                              label=PUBMEDQA_LABELS.index(decision.strip().lower()), label_names=PUBMEDQA_LABELS,
                              long_answer=optional_text(record, "LONG_ANSWER"), uid=pmid,
                              contexts=tuple(contexts), passage_labels=tuple(labels))


def read_pubmedqa(path: str | os.PathLike, *, skip_bad: bool = False,
                  report: ReadReport | None = None) -> list[ClassificationItem]:
    """PubMedQA in the ``ori_pqal.json`` layout: one JSON object ``{pmid: {"QUESTION", "CONTEXTS",
    "final_decision", "LONG_ANSWER", ...}}``. ``contexts`` are the CONTEXTS as given, ``context`` them joined
    with spaces.

    Messages give the line where the record's PMID key starts. A repeated PMID is a bad record
    (``json.load`` would silently keep only the last one); a JSON syntax error ends the read.
    """
    col = Collector(path, skip_bad, report)
    doc = JsonDocument(col)
    pos, char = doc.root()
    if char != "{":
        raise col.fatal(doc.line_at(pos), f"expected a JSON object mapping PMID to item, found {char!r}")
    items, seen = [], set()
    for pmid, key_pos, _, record in doc.members(pos, top_level=True):
        line = doc.line_at(key_pos)
        if pmid in seen:
            col.bad(line, "duplicate PMID", f"record {pmid!r}: duplicate PMID (appears earlier in the file)")
            continue
        seen.add(pmid)
        try:
            items.append(_pubmedqa_item(pmid, record))
        except BadRecord as e:
            col.bad_record(line, e, prefix=f"record {pmid!r}: ")
            continue
        col.ok()
    return items


def _bioasq_questions(col: Collector) -> Iterator[tuple[int, object]]:
    """``(line, question)`` from a golden file ``{"questions": [...]}`` or from JSONL."""
    name = col.path.lower()
    is_jsonl = name.endswith((".jsonl", ".jsonl.gz"))
    if not is_jsonl:
        try:
            head = json.loads(first_line(col.path))
            is_jsonl = isinstance(head, dict) and "questions" not in head
        except json.JSONDecodeError:
            pass  # a pretty-printed golden file: its first line is not a whole JSON value
    if is_jsonl:
        yield from iter_jsonl(col)
        return
    doc = JsonDocument(col)
    pos, char = doc.root()
    if char != "{":
        raise col.fatal(doc.line_at(pos), f"expected a JSON object {{\"questions\": [...]}}, found {char!r}")
    found = False
    for key, _, value_pos, value in doc.members(pos, top_level=True):
        if key != "questions":
            continue
        if not isinstance(value, list):
            raise col.fatal(doc.line_at(value_pos), f"'questions' must be a list, got {json_kind(value)}")
        found = True
        for item_pos, question in doc.items(value_pos):
            yield doc.line_at(item_pos), question
    if not found:
        raise col.fatal(None, "no 'questions' list; expected BioASQ golden JSON {\"questions\": [...]} "
                              "or JSONL with one question object per line")


def _bioasq_yesno(question: dict, uid: str) -> ClassificationItem:
    body = require_text(question, "body")
    if question.get("exact_answer") is None:
        raise BadRecord("missing 'exact_answer'")
    answer = question["exact_answer"]
    while isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if not isinstance(answer, str) or answer.strip().lower() not in BIOASQ_YESNO_LABELS:
        raise BadRecord("bad exact_answer", f"exact_answer {short(question['exact_answer'])} is not 'yes' or 'no'")
    snippets = question.get("snippets") or []
    if not isinstance(snippets, list):
        raise BadRecord("bad 'snippets'", f"'snippets' must be a list, got {json_kind(snippets)}")
    texts = []
    for i, snippet in enumerate(snippets):
        if not isinstance(snippet, dict) or not isinstance(snippet.get("text"), str):
            raise BadRecord("bad snippet", f"snippet {i} must be an object with a string 'text'")
        texts.append(snippet["text"])
    ideal = question.get("ideal_answer")
    if isinstance(ideal, list):
        ideal = _text_list(ideal, "'ideal_answer'")
        ideal = ideal[0] if ideal else ""
    elif ideal is not None and not isinstance(ideal, str):
        raise BadRecord("bad 'ideal_answer'", f"'ideal_answer' must be a string or a list of strings, "
                                              f"got {json_kind(ideal)}")
    return ClassificationItem(question=body, context=" ".join(texts),
                              label=BIOASQ_YESNO_LABELS.index(answer.strip().lower()),
                              label_names=BIOASQ_YESNO_LABELS, long_answer=ideal or "", uid=uid, contexts=tuple(texts))


def read_bioasq(path: str | os.PathLike, *, skip_bad: bool = False, report: ReadReport | None = None,
                types: Sequence[str] = ("yesno",)) -> list:
    """BioASQ Task B questions (``body``, ``type``, ``exact_answer``, ``snippets``, ``ideal_answer``,
    ``id``) from a golden JSON file or JSONL, keeping only the ``types`` asked for.

    ``yesno`` questions become :class:`ClassificationItem` over ``("yes", "no")`` with the snippets'
    texts as ``contexts`` (joined with spaces as ``context``) and the first ideal answer as ``long_answer``.
    ``factoid``, ``list`` and ``summary`` questions, when asked for, are returned as the original dicts
    (``body`` checked). Questions of other types are counted in ``report.skipped`` as
    ``"type <t> not requested"``, which is not an error.
    """
    types = (types,) if isinstance(types, str) else tuple(types)
    unknown = [t for t in types if t not in BIOASQ_TYPES]
    if unknown:
        raise TaskDataError(f"unknown BioASQ question type(s) {', '.join(map(repr, unknown))}; "
                            f"known: {', '.join(BIOASQ_TYPES)}", path=str(path))
    col = Collector(path, skip_bad, report)
    items: list = []
    for line, question in _bioasq_questions(col):
        try:
            if not isinstance(question, dict):
                raise BadRecord("not a JSON object", f"expected a JSON object, got {json_kind(question)}")
            uid = record_uid(question, f"{col.path}:{line}")
            qtype = question.get("type")
            if qtype is None:
                raise BadRecord("missing 'type'")
            if qtype not in BIOASQ_TYPES:
                raise BadRecord("unknown type", f"type {short(qtype)} is not one of {', '.join(BIOASQ_TYPES)}")
            if qtype not in types:
                col.not_requested(f"type {qtype} not requested")
                continue
            if qtype == "yesno":
                items.append(_bioasq_yesno(question, uid))
            else:
                require_text(question, "body")
                items.append(dict(question))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items
