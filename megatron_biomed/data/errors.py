"""The error of training data that cannot be used as configured (a missing or damaged .bin/.idx, ids outside the
tokenizer's vocabulary, an empty blend): raised before any work starts, naming the file or field."""

from __future__ import annotations

from megatron_biomed.errors import BiomedError


class DataError(BiomedError, ValueError):
    """Training data is missing or inconsistent with the model."""
