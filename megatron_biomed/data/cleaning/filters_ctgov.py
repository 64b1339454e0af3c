"""ClinicalTrials.gov filters (``SOURCE_FILTERS["ctgov"]``): which study records are not training text.

- ``withdrawn``: ``overallStatus`` WITHDRAWN (ctg-oas-v2.yaml components/schemas/Status; legacy "Withdrawn"): the
  study stopped before enrolling its first participant, so the record describes a trial that never ran. Dropped
  by default; ``--no-drop-withdrawn`` (``CleaningConfig.drop_withdrawn``) keeps them.
- ``no_study_description``: neither a brief summary nor a detailed description, so the text would be a title and
  lists only (our choice: the brief summary is the one required prose field of a registration, so a record
  without it is an incomplete one).

Imports nothing from ``filters.py`` (which imports this module).
"""

from __future__ import annotations

from megatron_biomed.data.cleaning.config import CleaningConfig
from megatron_biomed.data.readers.ctgov_study import DESCRIPTION_SECTIONS


def withdrawn(record: dict, cfg: CleaningConfig) -> bool:
    return cfg.drop_withdrawn and record.get("status") == "WITHDRAWN"


def no_description(record: dict, cfg: CleaningConfig) -> bool:
    return not set(record.get("sections") or ()) & set(DESCRIPTION_SECTIONS)


FILTERS = (
    ("withdrawn", withdrawn),
    ("no_study_description", no_description),
)
