"""Tell MEDLINE/PubMed XML from PMC JATS XML by the document's root element."""

from __future__ import annotations

from pathlib import Path

from megatron_biomed.data.readers.medline import MEDLINE_ROOTS
from megatron_biomed.data.readers.pmc import PMC_ROOTS, is_tar
from megatron_biomed.data.readers.xmlstream import BadInputError, root_name

FORMATS = ("medline", "pmc")


def detect_format(path: str | Path) -> str:
    """``"medline"`` or ``"pmc"``; raises :class:`BadInputError` for anything else.

    Tar archives are PMC bulk packages; anything else is judged by its root element.
    """
    if is_tar(path):
        return "pmc"
    root = root_name(path)
    if root in MEDLINE_ROOTS:
        return "medline"
    if root in PMC_ROOTS:
        return "pmc"
    raise BadInputError(
        path, 1,
        f"cannot tell the format from root element <{root}>: expected {MEDLINE_ROOTS} (MEDLINE) "
        f"or {PMC_ROOTS} (PMC JATS); pass --format to force one",
    )
