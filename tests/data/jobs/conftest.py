"""Fixtures of the pipeline tests: a tiny mixed corpus, a tokenizer trained on synthetic text, and the reference
outputs of the single-process tools on it (pipeline_corpus.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_corpus import Corpus  # noqa: E402

from megatron_biomed.data.readers import detect_format  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    c = Corpus(tmp_path_factory.mktemp("pipeline_corpus"))
    assert {detect_format(p) for p in c.inputs} == {"medline", "jsonl"}
    return c
