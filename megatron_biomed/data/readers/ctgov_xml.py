"""ClinicalTrials.gov legacy per-study XML (``NCT*.xml``, ``<clinical_study>`` root,
https://clinicaltrials.gov/ct2/html/images/info/public.xsd) into a ``ctgov_study.Study``, streamed element by
element."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lxml import etree

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
from megatron_biomed.data.readers.xmlstream import (
    BadInputError,
    child,
    children,
    element_text,
    iter_elements,
    localname,
    release,
    root_name,
)

CTGOV_ROOTS = ("clinical_study",)  # public.xsd: the document element of every legacy study file

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


