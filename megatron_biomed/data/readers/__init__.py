"""Readers for the raw biomedical literature dumps: MEDLINE/PubMed XML and PMC JATS XML.

Each reader streams one file and yields dataclass records whose ``text`` field is what
tokenizers and language models train on; broken input raises :class:`BadInputError`.
"""

from megatron_biomed.data.readers.detect import FORMATS, detect_format
from megatron_biomed.data.readers.medline import (
    BadRecord,
    MedlineDeletion,
    MedlineRecord,
    iter_medline,
    latest_citations,
)
from megatron_biomed.data.readers.pmc import (
    PmcRecord,
    PmcSection,
    classify_license,
    is_tar,
    iter_pmc,
    iter_pmc_tar,
)
from megatron_biomed.data.readers.xmlstream import BadInputError

__all__ = [
    "FORMATS",
    "BadInputError",
    "BadRecord",
    "MedlineDeletion",
    "MedlineRecord",
    "PmcRecord",
    "PmcSection",
    "classify_license",
    "detect_format",
    "is_tar",
    "iter_medline",
    "iter_pmc",
    "iter_pmc_tar",
    "latest_citations",
]
