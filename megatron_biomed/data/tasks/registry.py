"""Choose a task reader by format name, e.g. from a config field ``task_format``."""

from __future__ import annotations

import os
from collections.abc import Callable

from megatron_biomed.data.tasks.alignment import read_preferences, read_sft
from megatron_biomed.data.tasks.classification import read_bioasq, read_pubmedqa
from megatron_biomed.data.tasks.clinical_notes import read_discharge_notes
from megatron_biomed.data.tasks.entities import read_conll, read_pubtator
from megatron_biomed.data.tasks.errors import TaskDataError
from megatron_biomed.data.tasks.hallmarks import read_hoc
from megatron_biomed.data.tasks.multiple_choice import read_medmcqa, read_medqa, read_mmlu
from megatron_biomed.data.tasks.relation_sentences import read_chemprot, read_gad
from megatron_biomed.data.tasks.relations import read_bc5cdr_re, read_ddi_re, read_kd_dti_re
from megatron_biomed.data.tasks.similarity import read_biosses
from megatron_biomed.data.tasks.summaries import read_meqsum

READERS: dict[str, Callable[..., list]] = {
    "medqa": read_medqa,
    "medmcqa": read_medmcqa,
    "mmlu": read_mmlu,
    "pubmedqa": read_pubmedqa,
    "bioasq": read_bioasq,
    "sft": read_sft,
    "preference": read_preferences,
    "mimic_discharge": read_discharge_notes,
    "bc5cdr_re": read_bc5cdr_re,
    "kd_dti_re": read_kd_dti_re,
    "ddi_re": read_ddi_re,
    "meqsum": read_meqsum,
    "chemprot": read_chemprot,
    "gad": read_gad,
    "biosses": read_biosses,
    "hoc": read_hoc,
    "conll": read_conll,
    "pubtator": read_pubtator,
}


def read_task_file(path: str | os.PathLike, fmt: str, **kw) -> list:
    """Read ``path`` with the reader for ``fmt`` (one of :data:`READERS`); ``kw`` goes to that reader
    (``skip_bad``, ``report``, and ``cop_base`` for medmcqa, ``types`` for bioasq)."""
    reader = READERS.get(fmt)
    if reader is None:
        raise TaskDataError(f"unknown task format {fmt!r}; known: {', '.join(READERS)}", path=str(path))
    return reader(path, **kw)
