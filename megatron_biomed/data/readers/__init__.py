"""Readers for raw biomedical corpora (MEDLINE/PubMed XML, PMC JATS XML, and every source in ``registry.READERS``).

Each reader streams one file and yields dataclass records whose ``text`` field is what
tokenizers and language models train on; broken input raises :class:`BadInputError`.
"""

from megatron_biomed.data.readers.detect import detect_format, formats, takes
from megatron_biomed.data.readers.medline import (
    BadRecord,
    MedlineDeletion,
    MedlineRecord,
    iter_medline,
    latest_citations,
    medline_key,
)
from megatron_biomed.data.readers.pmc import (
    PmcRecord,
    PmcSection,
    classify_license,
    is_tar,
    iter_pmc,
    iter_pmc_tar,
)
from megatron_biomed.data.readers.registry import (
    READERS,
    ReaderOptions,
    SourceReader,
    UnknownFormatError,
    get_reader,
    input_suffixes,
)
from megatron_biomed.data.readers.xmlstream import BadInputError

__all__ = [
    "BadInputError",
    "READERS",
    "BadRecord",
    "MedlineDeletion",
    "MedlineRecord",
    "PmcRecord",
    "PmcSection",
    "classify_license",
    "ReaderOptions",
    "SourceReader",
    "UnknownFormatError",
    "detect_format",
    "formats",
    "get_reader",
    "input_suffixes",
    "is_tar",
    "iter_medline",
    "iter_pmc",
    "iter_pmc_tar",
    "latest_citations",
    "medline_key",
    "takes",
]
