"""ClinicalTrials.gov reader: study records to training text.

Inputs (``--format ctgov``, or ``auto``):

- legacy per-study XML (``NCT*.xml``, ``<clinical_study>`` root, https://clinicaltrials.gov/ct2/html/images/info/public.xsd),
  one file, a directory of them, or the ``AllPublicXML.zip`` bulk file;
- API v2 JSON (ClinicalTrials.gov REST API, OpenAPI spec ``ctg-oas-v2.yaml`` 2.0.5, https://clinicaltrials.gov/api/oas/v2,
  schemas ``Study``/``PagedStudies``): a single study object (``GET /studies/{nctId}``), a page
  ``{"studies": [...], "nextPageToken": ...}`` (``GET /studies``) or a list of studies in a ``.json`` file, NDJSON
  (one study per line) in a ``.jsonl``/``.ndjson`` file, and the ``ctg-studies.json.zip`` bulk file (one study
  per member); each plain or gzip-compressed (except inside a zip).

Memory: XML files and NDJSON lines are streamed; a ``.json`` file is read whole (one API page is at most
1,000 studies, a few tens of MB) and its studies decoded one at a time; a zip is read member by member (the
archive's central directory, one small entry per member, is held while reading).

Both formats are read into one :class:`Study` and made into text by one function, in this fixed order, each
part on its own line(s) and labelled (our choice: the labels are the section names of the ClinicalTrials.gov
study page, so a model sees the registry's own structure):

    <brief title>
    Official title: ...
    Brief summary:
    ...
    Detailed description:
    ...
    Conditions: a; b
    Interventions:
    - Drug: name (also: other names): description
    Arms:
    - label (Experimental): description
    Eligibility criteria:
    ...
    Study population:
    ...
    Primary outcomes:
    - measure (time frame: ...): description
    Secondary outcomes: / Other outcomes: (the same)

Free-text fields keep their paragraph and list structure: legacy ``<textblock>`` line wraps are joined, blank
lines separate paragraphs, list bullets become ``- ``; API v2 ``markup`` fields are CommonMark, whose backslash
escapes are undone. Statuses, phases and study types are stored in the API v2 enum spelling for both formats
(``Withdrawn`` -> ``WITHDRAWN``, ``Phase 1/Phase 2`` -> ``["PHASE1", "PHASE2"]``).

Versions: the identity is the NCT number (:func:`nct_key`) and copies rank by their last-update date
(``record_rank`` YYYYMMDD: legacy ``<last_update_posted>``, older files ``<lastchanged_date>``; v2
``statusModule.lastUpdatePostDateStruct.date``), so the latest version is kept whatever order files are read in;
an older copy is counted as ``superseded_version``.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lxml import etree

from megatron_biomed.data.readers.medline import BadRecord
from megatron_biomed.data.readers.registry import ReaderOptions, SourceReader
from megatron_biomed.data.readers.xmlstream import (
    BadInputError,
    child,
    children,
    element_text,
    iter_elements,
    localname,
    open_binary,
    release,
    root_name,
    squash,
)

CTGOV_ROOTS = ("clinical_study",)  # public.xsd: the document element of every legacy study file
JSON_SUFFIXES = (".json", ".json.gz")
NDJSON_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
ZIP_SUFFIXES = (".zip",)
NCT_ID = re.compile(r"^NCT\d{8}$")
_NCT_MEMBER = re.compile(r"(?:^|/)NCT\d{8}\.(?:xml|json)$", re.IGNORECASE)
_SNIFF_BYTES = 1 << 20
_MAX_LINE = 64 << 20  # one NDJSON study (a large one with results is a few MB)

# ClinicalTrials.gov API v2 (ctg-oas-v2.yaml, components/schemas/Status): overallStatus enum. The legacy XML
# spells the same values for display ("Active, not recruiting"); "Unknown status" is the one that differs.
STATUSES = (
    "ACTIVE_NOT_RECRUITING", "COMPLETED", "ENROLLING_BY_INVITATION", "NOT_YET_RECRUITING", "RECRUITING",
    "SUSPENDED", "TERMINATED", "WITHDRAWN", "AVAILABLE", "NO_LONGER_AVAILABLE", "TEMPORARILY_NOT_AVAILABLE",
    "APPROVED_FOR_MARKETING", "WITHHELD", "UNKNOWN",
)
_LEGACY_STATUS = {"UNKNOWN_STATUS": "UNKNOWN"}
# ctg-oas-v2.yaml components/schemas/Phase; legacy <phase> "Phase 1/Phase 2", "Early Phase 1", "N/A"
_LEGACY_PHASE = {"N/A": "NA", "EARLY PHASE 1": "EARLY_PHASE1"}

_MONTHS = {m: i for i, m in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"), start=1)}
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")
_LEGACY_DATE = re.compile(r"^([A-Za-z]+)\s+(?:(\d{1,2}),\s*)?(\d{4})$")  # "September 14, 2015", "March 1995"

# list bullets: "- ", "* ", "+ ", "o " (legacy plain-text lists), "•", "·", "▪", "●" (with or without a space)
_BULLET = re.compile(r"^(?:[-*+o]\s+|[\u2022\u00b7\u25aa\u25cf]\s*)(.*)$")
_NUMBERED = re.compile(r"^(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})[.)]\s+\S")
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")  # CommonMark 0.28 section 2.4: backslash escapes of ASCII punctuation


# ------------------------------------------------------------------------------------------------ the model


@dataclass
class Arm:
    label: str
    type: str  # display spelling: "Experimental", "Active Comparator", ...
    description: str


@dataclass
class Intervention:
    type: str  # display spelling: "Drug", "Dietary Supplement", ...
    name: str
    description: str
    other_names: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    measure: str
    time_frame: str
    description: str


@dataclass
class Study:
    """One study as read from either format, before it becomes text."""

    nct_id: str
    brief_title: str = ""
    official_title: str = ""
    acronym: str = ""
    status: str = ""  # API v2 Status enum
    why_stopped: str = ""
    phases: list[str] = field(default_factory=list)  # API v2 Phase enum
    study_type: str = ""  # API v2 StudyType enum
    conditions: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    brief_summary: str = ""  # free text with its line structure (see :func:`block_text`)
    detailed_description: str = ""
    interventions: list[Intervention] = field(default_factory=list)
    arms: list[Arm] = field(default_factory=list)
    eligibility: str = ""
    study_population: str = ""
    primary_outcomes: list[Outcome] = field(default_factory=list)
    secondary_outcomes: list[Outcome] = field(default_factory=list)
    other_outcomes: list[Outcome] = field(default_factory=list)
    last_update: str = ""  # ISO date (YYYY-MM-DD, or YYYY-MM where only the month is known)
    first_posted: str = ""
    has_results: bool = False
    nct_aliases: list[str] = field(default_factory=list)


@dataclass
class CtgovRecord:
    """One study's training text and the metadata the cleaning filters and reconcile use."""

    nct_id: str
    brief_title: str
    official_title: str
    acronym: str
    status: str
    why_stopped: str
    phases: list[str]
    study_type: str
    conditions: list[str]
    keywords: list[str]
    interventions: list[str]  # "Drug: Nifedipine"
    last_update: str
    first_posted: str
    has_results: bool
    nct_aliases: list[str]
    input_format: str  # "xml" (legacy public.xsd) or "json" (API v2)
    sections: list[str]  # keys of the parts present in `text`, in order (see SECTION_LABELS)
    text: str
    source: str = "ctgov"

    def to_dict(self) -> dict:
        return asdict(self)


# key -> label, in text order; the key is what `CtgovRecord.sections` lists
SECTION_LABELS = {
    "brief_title": "",
    "official_title": "Official title",
    "brief_summary": "Brief summary",
    "detailed_description": "Detailed description",
    "conditions": "Conditions",
    "interventions": "Interventions",
    "arms": "Arms",
    "eligibility": "Eligibility criteria",
    "study_population": "Study population",
    "primary_outcomes": "Primary outcomes",
    "secondary_outcomes": "Secondary outcomes",
    "other_outcomes": "Other outcomes",
}
DESCRIPTION_SECTIONS = ("brief_summary", "detailed_description")


# ------------------------------------------------------------------------------------------------ text


def block_text(raw: str | None, markdown: bool = False) -> str:
    """A free-text field as lines: wrapped lines joined, one paragraph or list item per line, bullets as ``- ``.

    Legacy ``<textblock>`` text is hard-wrapped at ~100 columns with indented continuation lines and CR LF
    line ends; API v2 ``markup`` fields are CommonMark (``markdown=True`` undoes its backslash escapes).
    """
    if not raw:
        return ""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    if markdown:
        text = _MD_ESCAPE.sub(r"\1", text)
    blocks: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            blocks.append(squash(" ".join(current)))
            current.clear()

    for line in text.split("\n"):
        s = line.strip()
        hard_break = markdown and s.endswith("\\")  # CommonMark hard line break: the line ends here
        if hard_break:
            s = s[:-1].rstrip()
        if not s:
            flush()
            continue
        bullet = _BULLET.match(s)
        if bullet and bullet.group(1):
            flush()
            current.append("- " + bullet.group(1))
        elif _NUMBERED.match(s):
            flush()
            current.append(s)
        else:
            current.append(s)
        if hard_break or (s.endswith(":") and len(s) <= 80):  # a heading line ("Inclusion Criteria:") stands alone
            flush()
    flush()
    return "\n".join(b for b in blocks if b)


def display(value: str) -> str:
    """``ACTIVE_COMPARATOR`` (API v2 enum) -> ``Active Comparator`` (the legacy XML's spelling); others as given."""
    value = squash(value)
    if value and value == value.upper() and " " not in value:
        return " ".join(w.capitalize() for w in value.split("_"))
    return value


def _outcome_lines(outcomes: list[Outcome]) -> str:
    lines = []
    for o in outcomes:
        head = o.measure or "Outcome"
        if o.time_frame:
            head += f" (time frame: {o.time_frame})"
        lines.append(f"- {head}: {o.description}" if o.description else f"- {head}")
    return "\n".join(lines)


def study_sections(study: Study) -> list[tuple[str, str]]:
    """``(key, text)`` of each non-empty part, in the fixed order of :data:`SECTION_LABELS`."""
    parts: dict[str, str] = {
        "brief_title": study.brief_title or study.official_title,
        "official_title": study.official_title if study.brief_title not in ("", study.official_title) else "",
        "brief_summary": study.brief_summary,
        "detailed_description": study.detailed_description,
        "conditions": "; ".join(c for c in study.conditions if c),
        "interventions": "\n".join(
            f"- {i.type + ': ' if i.type else ''}{i.name}"
            + (f" (also: {', '.join(i.other_names)})" if i.other_names else "")
            + (f": {squash(i.description)}" if i.description else "")
            for i in study.interventions if i.name
        ),
        "arms": "\n".join(
            f"- {a.label}{f' ({a.type})' if a.type else ''}" + (f": {squash(a.description)}" if a.description else "")
            for a in study.arms if a.label
        ),
        "eligibility": study.eligibility,
        "study_population": study.study_population,
        "primary_outcomes": _outcome_lines(study.primary_outcomes),
        "secondary_outcomes": _outcome_lines(study.secondary_outcomes),
        "other_outcomes": _outcome_lines(study.other_outcomes),
    }
    return [(key, parts[key]) for key in SECTION_LABELS if parts[key]]


def study_text(sections: list[tuple[str, str]]) -> str:
    out = []
    for key, body in sections:
        label = SECTION_LABELS[key]
        if not label:
            out.append(body)
        elif "\n" in body or body.startswith("- ") or key in DESCRIPTION_SECTIONS + ("eligibility",):
            out.append(f"{label}:\n{body}")
        else:
            out.append(f"{label}: {body}")
    return "\n".join(out)


def to_record(study: Study, input_format: str) -> CtgovRecord:
    sections = study_sections(study)
    return CtgovRecord(
        nct_id=study.nct_id,
        brief_title=study.brief_title,
        official_title=study.official_title,
        acronym=study.acronym,
        status=study.status,
        why_stopped=study.why_stopped,
        phases=study.phases,
        study_type=study.study_type,
        conditions=study.conditions,
        keywords=study.keywords,
        interventions=[f"{i.type}: {i.name}" if i.type else i.name for i in study.interventions if i.name],
        last_update=study.last_update,
        first_posted=study.first_posted,
        has_results=study.has_results,
        nct_aliases=study.nct_aliases,
        input_format=input_format,
        sections=[key for key, _ in sections],
        text=study_text(sections),
    )


# ------------------------------------------------------------------------------------------------ vocabularies


def normalize_status(value: str) -> str:
    """Legacy ``Active, not recruiting`` / API v2 ``ACTIVE_NOT_RECRUITING`` -> ``ACTIVE_NOT_RECRUITING``."""
    v = re.sub(r"[^A-Z0-9]+", "_", squash(value).upper()).strip("_")
    return _LEGACY_STATUS.get(v, v)


def normalize_phases(value: str | list[str] | None) -> list[str]:
    """Legacy ``Phase 1/Phase 2`` or API v2 ``["PHASE1", "PHASE2"]`` -> ``["PHASE1", "PHASE2"]``."""
    if not value:
        return []
    if isinstance(value, list):
        return [squash(str(p)).upper() for p in value if p]
    v = squash(value)
    if v.upper() in _LEGACY_PHASE:
        return [_LEGACY_PHASE[v.upper()]]
    out = []
    for part in v.split("/"):
        p = squash(part).upper()
        out.append(_LEGACY_PHASE.get(p, p.replace(" ", "")))
    return [p for p in out if p]


def normalize_study_type(value: str) -> str:
    """Legacy ``Observational [Patient Registry]`` / ``Expanded Access`` -> ``OBSERVATIONAL`` / ``EXPANDED_ACCESS``."""
    v = re.sub(r"\[.*?\]", "", squash(value))
    return re.sub(r"[^A-Z0-9]+", "_", v.upper()).strip("_")


def iso_date(value: str | None) -> str:
    """``2015-09-14`` / ``September 14, 2015`` -> ``2015-09-14``; ``March 1995`` -> ``1995-03``; else ``""``."""
    v = squash(value)
    m = _ISO_DATE.match(v)
    if m:
        return v
    m = _LEGACY_DATE.match(v)
    if m and m.group(1).lower() in _MONTHS:
        month = _MONTHS[m.group(1).lower()]
        return f"{m.group(3)}-{month:02d}" + (f"-{int(m.group(2)):02d}" if m.group(2) else "")
    return ""


# ------------------------------------------------------------------------------------------------ legacy XML


def _text(el: etree._Element | None, name: str) -> str:
    return element_text(child(el, name))


def _textblock(el: etree._Element | None) -> str:
    """public.xsd ``textblock_struct``: the text is in a ``<textblock>`` child."""
    block = child(el, "textblock")
    return "" if block is None else block_text("".join(block.itertext()))


def _outcomes(elements) -> list[Outcome]:
    # public.xsd protocol_outcome_struct: measure, time_frame, description
    return [Outcome(_text(o, "measure"), _text(o, "time_frame"), _text(o, "description")) for o in elements]


def _index(el: etree._Element | None) -> dict[str, list[etree._Element]]:
    """Direct children by local name, built once: a study has hundreds of children (one per site), and looking
    each field up by a scan of them was most of the parse time."""
    out: dict[str, list[etree._Element]] = {}
    for c in () if el is None else el:
        name = localname(c.tag)
        if name:
            out.setdefault(name, []).append(c)
    return out


def parse_clinical_study(el: etree._Element) -> Study | None:
    """A ``<clinical_study>`` element (public.xsd) as a :class:`Study`; None when it has no NCT number."""
    top = _index(el)

    def first(name: str) -> etree._Element | None:
        found = top.get(name)
        return found[0] if found else None

    def text(name: str) -> str:
        return element_text(first(name))

    id_info = first("id_info")
    nct_id = _text(id_info, "nct_id").upper()
    if not nct_id:
        return None
    eligibility = first("eligibility")
    # public.xsd: last_update_posted; files written before 2017 name it lastchanged_date
    last_update = text("last_update_posted") or text("lastchanged_date") or text("last_update_submitted")
    return Study(
        nct_id=nct_id,
        brief_title=text("brief_title"),
        official_title=text("official_title"),
        acronym=text("acronym"),
        status=normalize_status(text("overall_status")),
        why_stopped=text("why_stopped"),
        phases=normalize_phases(text("phase")),
        study_type=normalize_study_type(text("study_type")),
        conditions=[element_text(c) for c in top.get("condition", ())],
        keywords=[element_text(c) for c in top.get("keyword", ())],
        brief_summary=_textblock(first("brief_summary")),
        detailed_description=_textblock(first("detailed_description")),
        # public.xsd intervention_struct: intervention_type, intervention_name, description, arm_group_label*,
        # other_name*
        interventions=[
            Intervention(
                display(_text(i, "intervention_type")), _text(i, "intervention_name"), _text(i, "description"),
                [element_text(n) for n in children(i, "other_name")],
            )
            for i in top.get("intervention", ())
        ],
        # public.xsd arm_group_struct: arm_group_label, arm_group_type, description
        arms=[
            Arm(_text(a, "arm_group_label"), display(_text(a, "arm_group_type")), _text(a, "description"))
            for a in top.get("arm_group", ())
        ],
        eligibility=_textblock(child(eligibility, "criteria")),
        study_population=_textblock(child(eligibility, "study_pop")),
        primary_outcomes=_outcomes(top.get("primary_outcome", ())),
        secondary_outcomes=_outcomes(top.get("secondary_outcome", ())),
        other_outcomes=_outcomes(top.get("other_outcome", ())),
        last_update=iso_date(last_update),
        first_posted=iso_date(text("study_first_posted") or text("firstreceived_date")),
        has_results=first("clinical_results") is not None,
        nct_aliases=[element_text(a).upper() for a in children(id_info, "nct_alias")],
    )


def iter_ctgov_xml(path: str | Path, data: bytes | None = None) -> Iterator[CtgovRecord | BadRecord]:
    """Stream the studies of one legacy XML file (or ``data`` read from it). Raises :class:`BadInputError`."""
    root = root_name(path, data)
    if root not in CTGOV_ROOTS:
        raise BadInputError(path, 1, f"root element <{root}> is not a ClinicalTrials.gov study (<clinical_study>)")
    for _event, el in iter_elements(path, CTGOV_ROOTS, data=data):
        study = parse_clinical_study(el)
        if study is None:
            yield BadRecord(el.sourceline or 0, "<clinical_study> without <id_info><nct_id>")
        else:
            yield to_record(study, "xml")
        release(el)


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
                raw = f.readline(_MAX_LINE)
                if not raw:
                    break
                line_no += 1
                if len(raw) >= _MAX_LINE and not raw.endswith(b"\n"):
                    raise BadInputError(path, line_no, f"a line longer than {_MAX_LINE} bytes: not NDJSON")
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


# ------------------------------------------------------------------------------------------------ bulk zip


def iter_ctgov_zip(path: str | Path) -> Iterator[CtgovRecord | BadRecord]:
    """Stream ``AllPublicXML.zip`` (``NCT*.xml`` members) or ``ctg-studies.json.zip`` (``NCT*.json``), member by
    member in archive order. A broken member is a :class:`BadRecord` naming it (``--skip-bad`` counts it and
    goes on with the rest of the archive); an unreadable archive raises :class:`BadInputError`."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise BadInputError(path, 0, f"not a zip archive, or a truncated one ({e}); re-download it") from e
    with archive:
        for info in archive.infolist():
            name = info.filename
            low = name.lower()
            if info.is_dir() or not low.endswith((".xml", ".json")):
                continue
            where = f"{path}::{name}"
            try:
                data = archive.read(info)
                if low.endswith(".xml"):
                    items = list(iter_ctgov_xml(where, data=data))
                else:
                    items = list(iter_ctgov_json(where, data=data))
            except BadInputError as e:
                yield BadRecord(e.line, f"member {name}: {e.problem}")
                continue
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                yield BadRecord(0, f"member {name}: corrupt in the archive ({e})")
                continue
            for item in items:
                yield BadRecord(item.line, f"member {name}: {item.problem}") if isinstance(item, BadRecord) else item


# ------------------------------------------------------------------------------------------------ the seam


def nct_key(nct_id: str) -> int:
    """A study's identity for reconcile: a stable 63-bit hash of its NCT number (a hash, not the number itself,
    so it cannot collide with the small integers other readers use as keys, e.g. MEDLINE's PMID << 8)."""
    digest = hashlib.blake2b(f"ctgov:{nct_id.strip().upper()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _record_key(record: dict) -> int | None:
    nct = record.get("nct_id")
    return nct_key(nct) if nct else None


def _record_rank(record: dict) -> int:
    """The last-update date as YYYYMMDD (YYYYMM00 when only the month is known; 0 when unknown)."""
    m = _ISO_DATE.match(record.get("last_update") or "")
    if not m:
        return 0
    return int(m.group(1)) * 10000 + int(m.group(2)) * 100 + int(m.group(3) or 0)


def is_ctgov_zip(path: Path) -> bool:
    """A zip with a study-named member (``NCT01234567.xml`` / ``.json``) among its first files (AllPublicXML.zip
    may start with a ``Contents.txt``; USPTO bulk zips hold one ``ipgYYMMDD.xml``, which is not claimed)."""
    if not path.name.lower().endswith(ZIP_SUFFIXES):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            files = (info.filename for info in z.infolist() if not info.is_dir())
            return any(_NCT_MEMBER.search(name) for _, name in zip(range(16), files))
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def _looks_like_v2(path: Path, ndjson: bool) -> bool:
    """The first bytes hold an API v2 study: a ``protocolSection`` object (NDJSON: in the first line's object)."""
    try:
        with open_binary(path) as f:
            head = f.readline(_MAX_LINE) if ndjson else f.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return False
    text = head.decode("utf-8-sig", errors="replace")
    if ndjson:
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        return isinstance(obj, dict) and isinstance(obj.get("protocolSection"), dict)
    stripped = text.lstrip()
    # a key "protocolSection" whose value is an object: an escaped quote inside some other record's text
    # ("\"protocolSection\"") does not match
    return stripped[:1] in ("{", "[") and re.search(r'"protocolSection"\s*:\s*\{', text) is not None


def sniff(path: Path) -> bool:
    """ClinicalTrials.gov inputs told apart by name and content (XML studies are found by their root element)."""
    name = path.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return is_ctgov_zip(path)
    if name.endswith(NDJSON_SUFFIXES):
        return _looks_like_v2(path, ndjson=True)
    if name.endswith(JSON_SUFFIXES):
        return _looks_like_v2(path, ndjson=False)
    return False


def _read(path: Path, options: ReaderOptions) -> Iterator[CtgovRecord | BadRecord]:
    name = path.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return iter_ctgov_zip(path)
    if name.endswith(NDJSON_SUFFIXES):
        return iter_ctgov_ndjson(path)
    if name.endswith(JSON_SUFFIXES):
        return iter_ctgov_json(path)
    return iter_ctgov_xml(path)


READER = SourceReader(
    name="ctgov",
    description="ClinicalTrials.gov studies: legacy NCT*.xml (public.xsd) and AllPublicXML.zip; API v2 JSON "
                "(a study, a page of studies, NDJSON) and ctg-studies.json.zip",
    read=_read,
    suffixes=(".xml", ".xml.gz", *JSON_SUFFIXES, *NDJSON_SUFFIXES, *ZIP_SUFFIXES),
    roots=CTGOV_ROOTS,
    sniff=sniff,
    record_key=_record_key,
    record_rank=_record_rank,
    duplicate_reason="superseded_version",
)
