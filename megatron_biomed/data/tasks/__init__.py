"""Readers for the fine-tuning and evaluation task files (MedQA, MedMCQA, MMLU, PubMedQA, BioASQ,
ChemProt, GAD, BIOSSES, HoC, CoNLL/BIO and PubTator named entities, SFT chat data, preference pairs) in the formats
they are distributed in.

Each reader returns typed records. A bad record raises :class:`TaskDataError` with the message
``path:line: problem``; with ``skip_bad=True`` it is skipped and counted by reason in a
:class:`ReadReport` (pass one as ``report=`` to get the counts; :func:`format_report` gives a log line).
Plain and gzip-compressed files are both accepted.
"""

from megatron_biomed.data.tasks.alignment import read_preferences, read_sft
from megatron_biomed.data.tasks.classification import (
    BIOASQ_TYPES,
    BIOASQ_YESNO_LABELS,
    PUBMEDQA_LABELS,
    read_bioasq,
    read_pubmedqa,
)
from megatron_biomed.data.tasks.clinical_notes import DISCHARGE_COLUMNS, read_discharge_notes
from megatron_biomed.data.tasks.entities import read_conll, read_pubtator
from megatron_biomed.data.tasks.errors import ReadReport, TaskDataError, format_report
from megatron_biomed.data.tasks.hallmarks import HOC_LABELS, read_hoc
from megatron_biomed.data.tasks.multiple_choice import read_medmcqa, read_medqa, read_mmlu
from megatron_biomed.data.tasks.records import (
    ClassificationItem,
    ClinicalNote,
    MultiLabelItem,
    MultipleChoiceItem,
    PreferenceExample,
    SentencePairItem,
    SFTExample,
    TaggedSentence,
)
from megatron_biomed.data.tasks.registry import READERS, read_task_file
from megatron_biomed.data.tasks.relation_sentences import CHEMPROT_LABELS, GAD_LABELS, read_chemprot, read_gad
from megatron_biomed.data.tasks.similarity import read_biosses

__all__ = [
    "BIOASQ_TYPES",
    "BIOASQ_YESNO_LABELS",
    "CHEMPROT_LABELS",
    "GAD_LABELS",
    "HOC_LABELS",
    "PUBMEDQA_LABELS",
    "READERS",
    "ClassificationItem",
    "ClinicalNote",
    "DISCHARGE_COLUMNS",
    "MultiLabelItem",
    "MultipleChoiceItem",
    "PreferenceExample",
    "ReadReport",
    "SFTExample",
    "SentencePairItem",
    "TaggedSentence",
    "TaskDataError",
    "format_report",
    "read_bioasq",
    "read_biosses",
    "read_chemprot",
    "read_conll",
    "read_discharge_notes",
    "read_gad",
    "read_hoc",
    "read_medmcqa",
    "read_medqa",
    "read_mmlu",
    "read_preferences",
    "read_pubmedqa",
    "read_pubtator",
    "read_sft",
    "read_task_file",
]
