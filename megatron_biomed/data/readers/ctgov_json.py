"""ClinicalTrials.gov API v2 JSON (REST API, OpenAPI spec ``ctg-oas-v2.yaml`` 2.0.5,
https://clinicaltrials.gov/api/oas/v2, schemas ``Study``/``PagedStudies``) into
:class:`~megatron_biomed.data.readers.ctgov_study.Study`: a single study object (``GET /studies/{nctId}``), a page
``{"studies": [...], "nextPageToken": ...}`` (``GET /studies``) or a list of studies in a ``.json`` file (read
whole: one API page is at most 1,000 studies, a few tens of MB; its studies decoded one at a time), and NDJSON
(one study per line, streamed) in a ``.jsonl``/``.ndjson`` file."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from megatron_biomed.data.readers.ctgov_study import (
    Arm,
    CtgovRecord,
    Intervention,
    Outcome,
    Study,
    block_text,
    display,
    iso_date,
    normalize_phases,
    normalize_status,
    normalize_study_type,
    to_record,
)
from megatron_biomed.data.readers.medline import BadRecord
from megatron_biomed.data.readers.xmlstream import BadInputError, open_binary, squash

MAX_LINE = 64 << 20  # one NDJSON study (a large one with results is a few MB)

# ------------------------------------------------------------------------------------------------ API v2 JSON


def _get(d: object, *keys: str) -> object:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _str(d: object, *keys: str) -> str:
    v = _get(d, *keys)
    return squash(v) if isinstance(v, str) else ""


def _list(d: object, *keys: str) -> list:
    v = _get(d, *keys)
    return v if isinstance(v, list) else []


def _strings(d: object, *keys: str) -> list[str]:
    return [squash(x) for x in _list(d, *keys) if isinstance(x, str) and x.strip()]


def _markup(module: object, key: str) -> str:
    """A ``markup`` field (CommonMark with the API's default markupFormat=markdown) as lines."""
    v = _get(module, key)
    return block_text(v, markdown=True) if isinstance(v, str) else ""


def _v2_outcomes(module: object, name: str) -> list[Outcome]:
    # ctg-oas-v2.yaml components/schemas/Outcome: measure, description, timeFrame
    return [Outcome(_str(o, "measure"), _str(o, "timeFrame"), _str(o, "description"))
            for o in _list(module, name) if isinstance(o, dict)]


def parse_v2_study(obj: object) -> Study | str:
    """An API v2 ``Study`` object as a :class:`Study`, or the problem (a string) when it is not one."""
    if not isinstance(obj, dict) or not isinstance(obj.get("protocolSection"), dict):
        return "not a ClinicalTrials.gov API v2 study (no protocolSection object)"
    p = obj["protocolSection"]
    # ctg-oas-v2.yaml components/schemas: ProtocolSection.identificationModule.nctId, ...
    ident, status, desc = p.get("identificationModule"), p.get("statusModule"), p.get("descriptionModule")
    design, arms_mod, elig = p.get("designModule"), p.get("armsInterventionsModule"), p.get("eligibilityModule")
    outcomes, conds = p.get("outcomesModule"), p.get("conditionsModule")
    nct_id = _str(ident, "nctId").upper()
    if not nct_id:
        return "study without protocolSection.identificationModule.nctId"
    return Study(
        nct_id=nct_id,
        brief_title=_str(ident, "briefTitle"),
        official_title=_str(ident, "officialTitle"),
        acronym=_str(ident, "acronym"),
        status=normalize_status(_str(status, "overallStatus")),
        why_stopped=_str(status, "whyStopped"),
        phases=normalize_phases(_strings(design, "phases")),
        study_type=normalize_study_type(_str(design, "studyType")),
        conditions=_strings(conds, "conditions"),
        keywords=_strings(conds, "keywords"),
        brief_summary=_markup(desc, "briefSummary"),
        detailed_description=_markup(desc, "detailedDescription"),
        # ctg-oas-v2.yaml components/schemas/Intervention: type, name, description, armGroupLabels, otherNames
        interventions=[
            Intervention(display(_str(i, "type")), _str(i, "name"), _str(i, "description"), _strings(i, "otherNames"))
            for i in _list(arms_mod, "interventions") if isinstance(i, dict)
        ],
        # components/schemas/ArmGroup: label, type, description, interventionNames
        arms=[Arm(_str(a, "label"), display(_str(a, "type")), _str(a, "description"))
              for a in _list(arms_mod, "armGroups") if isinstance(a, dict)],
        eligibility=_markup(elig, "eligibilityCriteria"),
        study_population=_markup(elig, "studyPopulation"),
        primary_outcomes=_v2_outcomes(outcomes, "primaryOutcomes"),
        secondary_outcomes=_v2_outcomes(outcomes, "secondaryOutcomes"),
        other_outcomes=_v2_outcomes(outcomes, "otherOutcomes"),
        # components/schemas/StatusModule.lastUpdatePostDateStruct (DateStruct: date, type)
        last_update=iso_date(_str(status, "lastUpdatePostDateStruct", "date") or _str(status, "lastUpdateSubmitDate")),
        first_posted=iso_date(_str(status, "studyFirstPostDateStruct", "date")),
        has_results=bool(obj.get("hasResults")) or isinstance(obj.get("resultsSection"), dict),
        nct_aliases=[a.upper() for a in _strings(ident, "nctIdAliases")],
    )


def _v2_item(obj: object, line: int) -> CtgovRecord | BadRecord:
    study = parse_v2_study(obj)
    return BadRecord(line, study) if isinstance(study, str) else to_record(study, "json")


class _LineCounter:
    """Line number (1-based) of a character offset, for offsets asked in increasing order."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def __call__(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


_WS_RE = re.compile(r"\s*")
_PAGE_KEYS = ("studies", "nextPageToken", "totalCount")  # ctg-oas-v2.yaml components/schemas/PagedStudies


def _json_items(text: str, path: str | Path) -> Iterator[tuple[object, int]]:
    """``(study candidate, line)`` for each study in a JSON document: a study object, a page
    ``{"studies": [...], "nextPageToken": ...}``, a list of studies, or several such values one after another
    (NDJSON saved as ``.json``). Each study is decoded on its own, so a bad one is named by the line it starts on;
    malformed JSON raises :class:`BadInputError` with the parser's line."""
    dec = json.JSONDecoder()
    line_of = _LineCounter(text)

    def ws(pos: int) -> int:
        return _WS_RE.match(text, pos).end()

    def value(pos: int) -> tuple[object, int]:
        try:
            return dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise BadInputError(path, e.lineno, f"malformed JSON ({e.msg}, column {e.colno})") from e

    def expect(pos: int, char: str) -> int:
        pos = ws(pos)
        if not text.startswith(char, pos):
            got = text[pos:pos + 1] or "end of file"
            raise BadInputError(path, line_of(pos), f"malformed JSON (expected {char!r}, found {got!r})")
        return pos + 1

    def array(pos: int):  # pos: just after "["; yields the elements, returns the position after "]"
        pos = ws(pos)
        if text.startswith("]", pos):
            return pos + 1
        while True:
            start = pos = ws(pos)
            obj, pos = value(pos)
            yield obj, line_of(start)
            pos = ws(pos)
            if text.startswith("]", pos):
                return pos + 1
            pos = expect(pos, ",")

    def page(pos: int):  # pos: just after "{" of a PagedStudies object
        pos = ws(pos)
        if text.startswith("}", pos):
            return pos + 1
        while True:
            key, pos = value(ws(pos))
            pos = ws(expect(pos, ":"))
            if key == "studies" and text.startswith("[", pos):
                pos = yield from array(pos + 1)
            else:
                _, pos = value(pos)
            pos = ws(pos)
            if text.startswith("}", pos):
                return pos + 1
            pos = expect(pos, ",")

    pos = ws(0)
    if pos == len(text):
        raise BadInputError(path, 0, "empty document (no JSON value)")
    while pos < len(text):
        start = pos
        if text.startswith("[", pos):
            pos = yield from array(pos + 1)
        elif text.startswith("{", pos):
            first = ws(pos + 1)
            first_key = value(first)[0] if text.startswith('"', first) else None
            if first_key in _PAGE_KEYS:
                pos = yield from page(pos + 1)
            else:
                obj, pos = value(pos)
                yield obj, line_of(start)
        else:
            value(pos)  # raises with the parser's message where the value is broken
            raise BadInputError(path, line_of(pos), "not a study, a page of studies or a list of them")
        pos = ws(pos)


def _decode(data: bytes, path: str | Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BadInputError(path, line, f"bytes that are not valid UTF-8 ({e.reason} at byte {e.start})") from e


def iter_ctgov_json(path: str | Path, data: bytes | None = None) -> Iterator[CtgovRecord | BadRecord]:
    """The studies of one API v2 ``.json`` file (read whole), or of ``data`` read from it."""
    if data is None:
        with open_binary(path) as f:
            data = _read_all(f, path)
    for obj, line in _json_items(_decode(data, path), path):
        yield _v2_item(obj, line)


def _read_all(f, path: str | Path) -> bytes:
    try:
        return f.read()
    except (EOFError, OSError, zlib.error) as e:
        raise BadInputError(path, 0, f"truncated or corrupt gzip stream ({e}); re-download the file") from e


def iter_ctgov_ndjson(path: str | Path) -> Iterator[CtgovRecord | BadRecord]:
    """Stream an NDJSON file, one API v2 study per line; a line that is not one is a :class:`BadRecord`."""
    line_no = 0
    try:
        with open_binary(path) as f:
            while True:
                raw = f.readline(MAX_LINE)
                if not raw:
                    break
                line_no += 1
                if len(raw) >= MAX_LINE and not raw.endswith(b"\n"):
                    raise BadInputError(path, line_no, f"a line longer than {MAX_LINE} bytes: not NDJSON")
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except UnicodeDecodeError as e:
                    yield BadRecord(line_no, f"bytes that are not valid UTF-8 ({e.reason})")
                    continue
                except json.JSONDecodeError as e:
                    what = "truncated" if not raw.endswith(b"\n") or e.pos >= len(raw.rstrip()) else "malformed"
                    yield BadRecord(line_no, f"{what} JSON line ({e.msg}, column {e.colno})")
                    continue
                yield _v2_item(obj, line_no)
    except (EOFError, zlib.error) as e:
        raise BadInputError(path, line_no, f"truncated or corrupt gzip stream ({e}); re-download the file") from e


