"""Cleaning PubMed/PMC records into training text: filters, deduplication, reports, pipeline."""

from megatron_biomed.data.cleaning.config import CleaningConfig
from megatron_biomed.data.cleaning.dedup import ExactDeduper, NearDuplicateIndex, text_hash
from megatron_biomed.data.cleaning.filters import REASONS, filter_reason
from megatron_biomed.data.cleaning.pipeline import PipelineConfig, expand_inputs, run_pipeline
from megatron_biomed.data.cleaning.report import CleaningReport
from megatron_biomed.data.cleaning.textnorm import normalize_text

__all__ = [
    "REASONS",
    "CleaningConfig",
    "CleaningReport",
    "ExactDeduper",
    "NearDuplicateIndex",
    "PipelineConfig",
    "expand_inputs",
    "filter_reason",
    "normalize_text",
    "run_pipeline",
    "text_hash",
]
