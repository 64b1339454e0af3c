"""ClinicalTrials.gov studies, whichever format they came in: the :class:`Study` model both readers fill
(legacy XML: ``ctgov_xml.py``, API v2 JSON: ``ctgov_json.py``), its training text, the record written per study,
and the API v2 vocabularies (statuses, phases, study types, dates) both formats are normalised to.

The text, in this fixed order, each part on its own line(s) and labelled (our choice: the labels are the section
names of the ClinicalTrials.gov study page, so a model sees the registry's own structure):

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
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from megatron_biomed.data.readers.xmlstream import squash

NCT_ID = re.compile(r"^NCT\d{8}$")

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
ISO_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")
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
    m = ISO_DATE.match(v)
    if m:
        return v
    m = _LEGACY_DATE.match(v)
    if m and m.group(1).lower() in _MONTHS:
        month = _MONTHS[m.group(1).lower()]
        return f"{m.group(3)}-{month:02d}" + (f"-{int(m.group(2)):02d}" if m.group(2) else "")
    return ""


